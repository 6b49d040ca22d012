"""docs/iam-policy.json allows every AWS action the code performs, and nothing else (issue 10).

The actions are read from the product code's syntax tree (`providers/`, `bot/`):
- the services it builds clients for (`.client("ec2")`, `session.client("sts", ...)`);
- any attribute named after one of those services' operations, called or passed as a value
  (`self._client.run_instances(...)`, `functools.partial(self._client.stop_instances, ...)`,
  `self._pricing().get_products`), and paginators by name;
- the operation labels given to the retry wrapper (`"ec2:DescribeInstances"`);
- actions a request parameter implies (an instance profile needs `iam:PassRole`, tags at launch `CreateTags`).
Operation names come from botocore's own service models, so a new call is found without editing this test.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name

from providers import tags as tagschema
from providers.aws.config import AL2023_PARAMETER
from providers.aws.ssm import DOCUMENT
from tests.unit.deploy.deploy_support import ROOT, Source, product_sources

POLICY = ROOT / "docs" / "iam-policy.json"
SCANNED = (ROOT / "providers", ROOT / "bot")
EXCLUDED = (
    # The sandbox seeds its demo fleet in the moto server it starts itself (endpoint_url is mandatory
    # there): it never calls a real account, so its requests need no permission.
    ROOT / "bot" / "sandbox",
    ROOT / "bot" / "slack" / "standin",
)
# botocore service name -> IAM action prefix. Every service the code builds a client for must be listed.
IAM_PREFIX = {
    "ec2": "ec2",
    "ssm": "ssm",
    "cloudwatch": "cloudwatch",
    "pricing": "pricing",
    "sts": "sts",
    "s3": "s3",
}
# API operations whose IAM action has another name (S3 authorises object listings as ListBucket).
IAM_ACTION_FOR = {"s3:ListObjectsV2": "s3:ListBucket", "s3:ListObjects": "s3:ListBucket"}
# Actions a request needs besides its own, by the request parameter that triggers them.
IMPLIED_BY_PARAMETER = {
    "IamInstanceProfile": ("iam:PassRole",),  # RunInstances passes the profile's role to EC2
    "TagSpecifications": ("ec2:CreateTags",),  # tags written at launch are authorised as CreateTags
}
# Actions without resource-level permissions: AWS requires "Resource": "*" for them.
UNSCOPED_ACTIONS = frozenset(
    {
        "ec2:DescribeInstances",
        "ec2:DescribeImages",
        "ec2:DescribeSpotPriceHistory",
        "cloudwatch:GetMetricData",
        "pricing:GetProducts",
        "ssm:GetCommandInvocation",
        "sts:GetCallerIdentity",
    }
)
# Actions that change a machine: allowed only on instances whose tags make them managed.
TAG_GUARDED = frozenset(
    {"ec2:StartInstances", "ec2:StopInstances", "ec2:TerminateInstances", "ec2:CreateTags", "ec2:DeleteTags"}
)
INSTANCE_ARN = "arn:aws:ec2:*:*:instance/*"
MANAGED_POLICY_LIMIT = 6144  # characters, whitespace excluded
_LABEL = re.compile(r"([a-z][a-z0-9-]*):([A-Z][A-Za-z0-9]*)")


@dataclass(frozen=True)
class Use:
    action: str  # IAM action, e.g. "ec2:DescribeInstances"
    where: str


@cache
def operations(service: str) -> dict[str, str]:
    """snake_case method name -> API operation name, from botocore's model of `service`."""
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


def _str_arg(node: ast.Call, position: int, keyword: str) -> str | None:
    for kw in node.keywords:
        if kw.arg == keyword and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
            return kw.value.value
    if len(node.args) > position:
        arg = node.args[position]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            return arg.value
    return None


def client_services(sources: list[Source]) -> dict[str, list[str]]:
    """botocore service -> where the code builds a client for it."""
    found: dict[str, list[str]] = {}
    for source in sources:
        for node in ast.walk(source.tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "client"
            ):
                service = _str_arg(node, 0, "service_name")
                if service is not None:
                    found.setdefault(service, []).append(source.where(node))
    return found


def operation_uses(source: Source, services: list[str]) -> Iterator[Use]:
    by_method: dict[str, list[str]] = {}
    for service in services:
        for method, operation in operations(service).items():
            action = f"{IAM_PREFIX[service]}:{operation}"
            by_method.setdefault(method, []).append(IAM_ACTION_FOR.get(action, action))
    prefixes = {IAM_PREFIX[s]: s for s in services}
    for node in ast.walk(source.tree):
        if isinstance(node, ast.Attribute) and node.attr in by_method:
            for action in by_method[node.attr]:
                yield Use(action, source.where(node))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "get_paginator":
                name = _str_arg(node, 0, "operation_name")
                for action in by_method.get(name or "", []):
                    yield Use(action, source.where(node))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            label = _LABEL.fullmatch(node.value)
            if label and label.group(1) in prefixes:
                service = prefixes[label.group(1)]
                assert label.group(2) in operations(service).values(), (
                    f"{source.where(node)}: {node.value!r} names no {service} API operation "
                    "(a typo in the operation label?)"
                )
                yield Use(node.value, source.where(node))


def implied_uses(source: Source) -> Iterator[Use]:
    """Request parameters written as dict keys, keyword arguments or `request["Key"] = value`."""
    for node in ast.walk(source.tree):
        names: list[tuple[str, ast.AST]] = []
        if isinstance(node, ast.Dict):
            names = [
                (k.value, k) for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)
            ]
        elif isinstance(node, ast.keyword) and node.arg:
            names = [(node.arg, node.value)]
        elif (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str)
        ):
            names = [(node.slice.value, node)]
        for name, at in names:
            for action in IMPLIED_BY_PARAMETER.get(name, ()):
                yield Use(action, source.where(at))


def scan(sources: list[Source]) -> dict[str, list[str]]:
    """IAM action -> where the code needs it."""
    services = client_services(sources)
    unknown = sorted(
        f"{where}: {service}"
        for service, sites in services.items()
        if service not in IAM_PREFIX
        for where in sites
    )
    assert not unknown, (
        "The code builds boto3 clients for services this test does not know; add each to IAM_PREFIX and its "
        "actions to docs/iam-policy.json:\n  " + "\n  ".join(unknown)
    )
    needed: dict[str, list[str]] = {}
    for source in sources:
        for use in [*operation_uses(source, sorted(services)), *implied_uses(source)]:
            needed.setdefault(use.action, []).append(use.where)
    return needed


@cache
def code_actions() -> dict[str, list[str]]:
    return scan(list(product_sources(SCANNED, excluding=EXCLUDED)))


# --- the policy ----------------------------------------------------------------------------------------


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@cache
def statements() -> tuple[dict[str, Any], ...]:
    policy = json.loads(POLICY.read_text(encoding="utf-8"))
    assert policy.get("Version") == "2012-10-17", "use the current policy language version"
    return tuple(policy["Statement"])


def actions_of(statement: Mapping[str, Any]) -> list[str]:
    return _listed(statement["Action"])


def resources_of(statement: Mapping[str, Any]) -> list[str]:
    return _listed(statement["Resource"])


def allows(pattern: str, action: str) -> bool:
    """IAM action matching: case-insensitive, `*` and `?` wildcards."""
    return fnmatch.fnmatchcase(action.lower(), pattern.lower())


def expand(pattern: str) -> list[str]:
    """Every action a wildcard pattern allows, from the service's model (unknown services fail)."""
    prefix = pattern.split(":", 1)[0]
    services = [s for s, p in IAM_PREFIX.items() if p == prefix]
    assert services, f"{pattern!r}: cannot tell what a wildcard on {prefix!r} allows; spell the actions out"
    return [
        f"{prefix}:{op}"
        for s in services
        for op in operations(s).values()
        if allows(pattern, f"{prefix}:{op}")
    ]


def statements_allowing(action: str) -> list[dict[str, Any]]:
    return [s for s in statements() if any(allows(p, action) for p in actions_of(s))]


def tags_described(condition: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """The tags an instance must carry to satisfy `condition`, as a sample tag set."""
    sample: dict[str, str] = {}
    for operator, pairs in condition.items():
        for key, value in pairs.items():
            lowered = key.lower()
            if not lowered.startswith(("aws:resourcetag/", "ssm:resourcetag/")):
                continue
            wanted = _listed(value)[0]
            if operator.startswith("StringLike"):
                wanted = wanted.replace("?", "x").replace("*", "")
            sample[key.split("/", 1)[1]] = wanted
    return sample


def _condition_value(statement: Mapping[str, Any], operator: str, key: str) -> list[str]:
    value = statement.get("Condition", {}).get(operator, {}).get(key)
    return [] if value is None else _listed(value)


def _resolve_tag_keys(node: ast.expr, where: str) -> set[str]:
    """The tag keys an argument of set_tags/remove_tags names (literals or providers.tags constants)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Dict):
        keys: set[str] = set()
        for key in node.keys:
            assert key is not None, f"{where}: `**` in the tags of set_tags hides which keys it writes"
            keys |= _resolve_tag_keys(key, where)
        return keys
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return set().union(*(_resolve_tag_keys(e, where) for e in node.elts))
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("list", "tuple", "set", "sorted", "frozenset")
        and len(node.args) == 1
    ):
        return _resolve_tag_keys(node.args[0], where)
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id in ("tagschema", "tags")
        and hasattr(tagschema, node.attr)
    ):
        value = getattr(tagschema, node.attr)
        return {value} if isinstance(value, str) else set(value)
    raise AssertionError(
        f"{where}: cannot tell which tag keys this set_tags/remove_tags call touches; write them as literals "
        "or providers.tags constants so this test can check them against aws:TagKeys in the policy"
    )


def tag_keys_the_code_touches() -> dict[str, set[str]]:
    """Provider method -> tag keys the bot's services write or remove on existing machines."""
    touched: dict[str, set[str]] = {"set_tags": set(), "remove_tags": set()}
    for source in product_sources([ROOT / "bot"], excluding=EXCLUDED):
        for node in ast.walk(source.tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                method = node.func.attr
                if method in touched:
                    where = source.where(node)
                    assert len(node.args) == 2, f"{where}: expected {method}(instance_ids, keys)"
                    touched[method] |= _resolve_tag_keys(node.args[1], where)
    return touched


# --- the scanner itself --------------------------------------------------------------------------------


def test_scanner_finds_operations_however_they_are_written() -> None:
    code = (
        "import functools\n"
        "def f(session, self):\n"
        "    ec2 = session.client('ec2')\n"
        "    cw = session.client(service_name='cloudwatch')\n"
        "    ec2.run_instances(ImageId='ami-1', IamInstanceProfile={'Name': 'p'})\n"
        "    functools.partial(self._client.stop_instances, InstanceIds=[])\n"
        "    self._ec2().describe_spot_price_history\n"
        "    ec2.get_paginator('describe_images')\n"
        "    self._caller.call('ec2:DescribeInstances', lambda: None)\n"
        "    self._caller.call('ami:resolve', lambda: None)\n"
        "    request = {}\n"
        "    request['TagSpecifications'] = []\n"
        "    cw.not_an_operation()\n"
    )
    found = scan([Source(Path("sample.py"), ast.parse(code))])
    assert sorted(found) == [
        "ec2:CreateTags",
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeSpotPriceHistory",
        "ec2:RunInstances",
        "ec2:StopInstances",
        "iam:PassRole",
    ]


def test_scanner_rejects_a_label_that_names_no_operation() -> None:
    code = "def f(s):\n    s.client('ec2')\n    s.call('ec2:DescribeInstanceZ', None)\n"
    try:
        scan([Source(Path("sample.py"), ast.parse(code))])
    except AssertionError as exc:
        assert "'ec2:DescribeInstanceZ' names no ec2 API operation" in str(exc)
    else:
        raise AssertionError("a misspelt operation label went unnoticed")


def test_every_service_the_code_uses_contributes_actions() -> None:
    services = client_services(list(product_sources(SCANNED, excluding=EXCLUDED)))
    assert services, "found no boto3 client in providers/ or bot/: the scan is broken"
    found_prefixes = {action.split(":", 1)[0] for action in code_actions()}
    silent = sorted(s for s in services if IAM_PREFIX[s] not in found_prefixes)
    assert not silent, f"clients are built for {silent} but no call on them was found: the scan is broken"


# --- the code against the policy -----------------------------------------------------------------------


def test_policy_allows_every_action_the_code_performs() -> None:
    patterns = [p for s in statements() for p in actions_of(s)]
    missing = {
        action: sites
        for action, sites in code_actions().items()
        if not any(allows(p, action) for p in patterns)
    }
    assert not missing, "docs/iam-policy.json does not allow actions the code performs:\n" + "\n".join(
        f"  {action}: {', '.join(sorted(set(sites)))}" for action, sites in sorted(missing.items())
    )


def test_policy_allows_nothing_the_code_does_not_do() -> None:
    needed = set(code_actions())
    problems: list[str] = []
    for statement in statements():
        for pattern in actions_of(statement):
            if pattern == "*" or pattern.endswith(":*"):
                problems.append(f"{statement.get('Sid')}: {pattern!r} allows every action")
            elif "*" in pattern or "?" in pattern:
                extra = [a for a in expand(pattern) if a not in needed]
                if extra:
                    shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
                    problems.append(f"{statement.get('Sid')}: {pattern!r} also allows {shown}")
            elif pattern not in needed:
                problems.append(f"{statement.get('Sid')}: allows {pattern}, which no code calls")
    assert not problems, "docs/iam-policy.json allows more than the code needs:\n  " + "\n  ".join(problems)


def test_policy_uses_only_plain_allow_statements() -> None:
    for statement in statements():
        sid = statement.get("Sid")
        assert sid, f"every statement needs a Sid that says why it exists: {statement}"
        assert statement["Effect"] == "Allow", f"{sid}: this check understands Allow statements only"
        assert not {"NotAction", "NotResource", "Principal"} & set(statement), f"{sid}: NotAction/NotResource"
    sids = [s["Sid"] for s in statements()]
    assert len(sids) == len(set(sids)), "statement Sids must be unique"


def test_policy_fits_a_managed_policy() -> None:
    size = len(re.sub(r"\s", "", POLICY.read_text(encoding="utf-8")))
    assert size <= MANAGED_POLICY_LIMIT, f"{size} characters: more than a managed policy holds"


# --- how each action is scoped -------------------------------------------------------------------------


def test_only_actions_without_resource_level_permissions_get_every_resource() -> None:
    for statement in statements():
        if "*" in resources_of(statement):
            broad = sorted(set(actions_of(statement)) - UNSCOPED_ACTIONS)
            assert not broad, f"{statement['Sid']}: {broad} support resource-level permissions; scope them"
    for action in UNSCOPED_ACTIONS & set(code_actions()):
        assert all(resources_of(s) == ["*"] for s in statements_allowing(action)), action


def test_machine_changes_are_limited_to_managed_instances() -> None:
    guarded = TAG_GUARDED & set(code_actions())
    assert guarded, "the code changes no machine? the scan is broken"
    for action in sorted(guarded):
        for statement in statements_allowing(action):
            sid = statement["Sid"]
            if _condition_value(statement, "StringEquals", "ec2:CreateAction"):
                continue  # tagging at launch, checked below
            assert resources_of(statement) == [INSTANCE_ARN], f"{sid}: {action} on instances only"
            tags = tags_described(statement.get("Condition", {}))
            assert tags, f"{sid}: {action} must be conditioned on the instance's tags"
            assert tagschema.is_managed(tags), f"{sid}: {tags} does not describe a managed instance"


def test_commands_run_only_the_shell_document_on_managed_instances() -> None:
    for statement in statements_allowing("ssm:SendCommand"):
        sid = statement["Sid"]
        resources = resources_of(statement)
        if all(r.startswith("arn:aws:ssm:") for r in resources):
            assert all(r.endswith(f":document/{DOCUMENT}") for r in resources), f"{sid}: only {DOCUMENT}"
            continue
        assert resources == [INSTANCE_ARN], f"{sid}: keep SendCommand's instances apart from its document"
        tags = tags_described(statement.get("Condition", {}))
        assert tags and tagschema.is_managed(tags), f"{sid}: {tags} does not describe a managed instance"


def test_launches_must_carry_the_managed_tag() -> None:
    tagged_kinds = ("instance/", "volume/")
    for action in ("ec2:RunInstances", "ec2:CreateTags"):
        for statement in statements_allowing(action):
            sid = statement["Sid"]
            resources = resources_of(statement)
            assert "*" not in resources, f"{sid}: {action} on every resource"
            creates = action == "ec2:RunInstances" or _condition_value(
                statement, "StringEquals", "ec2:CreateAction"
            )
            if not creates or not any(kind in r for r in resources for kind in tagged_kinds):
                continue
            required = _condition_value(statement, "StringEquals", f"aws:RequestTag/{tagschema.MANAGED}")
            assert required == ["true"], (
                f"{sid}: {action} must require {tagschema.MANAGED}=true in the request"
            )
    for statement in statements_allowing("ec2:CreateTags"):
        creating = _condition_value(statement, "StringEquals", "ec2:CreateAction")
        assert creating in ([], ["RunInstances"]), (
            f"{statement['Sid']}: tags at launch only from RunInstances"
        )


def test_tag_changes_are_limited_to_the_keys_the_code_touches() -> None:
    touched = tag_keys_the_code_touches()
    assert touched["set_tags"] and touched["remove_tags"], "found no set_tags/remove_tags call: scan broken"
    wanted = sorted(touched["set_tags"] | touched["remove_tags"])
    for action in ("ec2:CreateTags", "ec2:DeleteTags"):
        for statement in statements_allowing(action):
            if _condition_value(statement, "StringEquals", "ec2:CreateAction"):
                continue
            sid = statement["Sid"]
            allowed = sorted(_condition_value(statement, "ForAllValues:StringEquals", "aws:TagKeys"))
            assert allowed == wanted, f"{sid}: aws:TagKeys {allowed}, but the code touches {wanted}"
            # Without this, DeleteTags with no tag list (which deletes every tag) would pass ForAllValues.
            assert _condition_value(statement, "Null", "aws:TagKeys") == ["false"], (
                f"{sid}: require aws:TagKeys"
            )


def test_only_the_training_role_can_be_passed_and_only_to_ec2() -> None:
    for statement in statements_allowing("iam:PassRole"):
        sid = statement["Sid"]
        assert all(
            r.startswith("arn:aws:iam::") and ":role/" in r and not r.endswith("/*")
            for r in resources_of(statement)
        ), f"{sid}: name the instance role, not every role"
        assert _condition_value(statement, "StringEquals", "iam:PassedToService") == ["ec2.amazonaws.com"], (
            sid
        )


def test_parameter_reads_are_limited_to_the_amazon_linux_image_ids() -> None:
    wanted = [
        f"arn:aws:ssm:us-east-1::parameter{AL2023_PARAMETER.format(arch=arch)}"
        for arch in ("x86_64", "arm64")
    ]
    patterns = [r for s in statements_allowing("ssm:GetParameter") for r in resources_of(s)]
    for arn in wanted:
        assert any(fnmatch.fnmatchcase(arn, p) for p in patterns), f"GetParameter does not cover {arn}"
    secret = "arn:aws:ssm:us-east-1:111122223333:parameter/prod/database-password"
    assert not any(fnmatch.fnmatchcase(secret, p) for p in patterns), "GetParameter reaches other parameters"
