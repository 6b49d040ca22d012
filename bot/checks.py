"""`runctl-bot check`: every problem at once, each with the variable to set and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.config import SLACK_API_DEFAULT, Settings


@dataclass
class CheckReport:
    ok: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"✓ {line}" for line in self.ok]
        out += [f"! {line}" for line in self.warnings]
        out += [f"✗ {line}" for line in self.problems]
        verdict = (
            f"{len(self.problems)} problem(s) found; fix them and run `runctl-bot check` again."
            if self.problems
            else "All checks passed."
        )
        return [*out, verdict]


def _check_roles(settings: Settings, report: CheckReport) -> None:
    if not settings.admins:
        report.warnings.append(
            "RUNCTL_ADMINS is empty: nobody can force, change config or approve batches "
            "(set RUNCTL_ADMINS=U012ABCDEF,…)"
        )
    if not settings.approvers:
        report.warnings.append(
            "RUNCTL_APPROVERS is empty: terminations and costly launches can never be approved "
            "(fail closed; set RUNCTL_APPROVERS=U…,U…)"
        )
    if not settings.users:
        report.warnings.append(
            "RUNCTL_USERS is empty: workspace members may only use read-only verbs (set RUNCTL_USERS=U…)"
        )
    else:
        report.ok.append(
            "roles: {admins} admin(s), {approvers} approver(s), {users} user(s)".format(
                **settings.role_summary()
            )
        )


def _check_slack(settings: Settings, report: CheckReport) -> None:
    if settings.slack_bot_token is None:
        report.problems.append(
            "SLACK_BOT_TOKEN is not set: create a Slack app (docs/slack-app.md), install it, "
            "and set its Bot User OAuth Token (xoxb-…)"
        )
    if settings.slack_signing_secret is None and not settings.socket_mode:
        report.problems.append(
            "SLACK_SIGNING_SECRET is not set: copy it from the app's Basic Information page "
            "(or set SLACK_APP_TOKEN to use Socket Mode)"
        )
    if settings.slack_bot_token is None:
        return
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    client = WebClient(
        token=settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url, timeout=10
    )
    try:
        identity = client.auth_test()
        where = "" if settings.slack_api_url == SLACK_API_DEFAULT else f" at {settings.slack_api_url}"
        report.ok.append(
            f"Slack auth.test{where}: bot {identity.get('user_id')} in team {identity.get('team')}"
        )
    except SlackApiError as exc:
        report.problems.append(
            f"SLACK_BOT_TOKEN: Slack refused it ({exc.response.get('error')}); reinstall the app and copy "
            "the current Bot User OAuth Token"
        )
    except Exception as exc:
        report.problems.append(
            f"RUNCTL_SLACK_API_URL: cannot reach {settings.slack_api_url} ({type(exc).__name__}: {exc})"
        )


def _check_aws(settings: Settings, report: CheckReport) -> None:
    import boto3
    import botocore.exceptions
    from botocore.config import Config

    try:
        session = boto3.Session(profile_name=settings.aws_profile, region_name=settings.aws_region)
    except botocore.exceptions.ProfileNotFound:
        report.problems.append(f"AWS_PROFILE: profile {settings.aws_profile!r} is not in ~/.aws/config")
        return
    if session.get_credentials() is None:
        report.problems.append(
            "AWS credentials not found: set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "or run on an instance/task role (or try everything locally with `runctl-bot sandbox`)"
        )
        return
    sts = session.client(
        "sts",
        endpoint_url=settings.aws_endpoint_url,
        config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}),
    )
    try:
        who = sts.get_caller_identity()
        report.ok.append(f"AWS sts get-caller-identity: account {who['Account']} as {who['Arn']}")
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        report.problems.append(f"AWS credentials were refused ({code}): check AWS_PROFILE or the access keys")
    except botocore.exceptions.BotoCoreError as exc:
        report.problems.append(f"AWS_ENDPOINT_URL / AWS_REGION: cannot reach STS ({exc})")


def _check_database(settings: Settings, report: CheckReport) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    from storage.engine import make_engine
    from storage.migrate import current_revision, head_revision

    try:
        engine = make_engine(settings.database_url)
    except (SQLAlchemyError, ValueError) as exc:
        report.problems.append(f"DATABASE_URL: cannot use it ({exc})")
        return
    try:
        current = current_revision(engine)
    except SQLAlchemyError as exc:
        report.problems.append(f"DATABASE_URL: cannot connect ({type(exc).__name__}: {exc})")
        return
    finally:
        engine.dispose()
    head = head_revision()
    if current != head:
        report.problems.append(
            f"DATABASE_URL: schema is at {current or 'nothing'}, code needs {head}: run `runctl-bot migrate`"
        )
    else:
        report.ok.append(f"database schema is current ({head})")


def run_checks(settings: Settings) -> CheckReport:
    report = CheckReport()
    report.ok.append("configuration parsed")
    _check_roles(settings, report)
    _check_database(settings, report)
    _check_slack(settings, report)
    _check_aws(settings, report)
    return report
