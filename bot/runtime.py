"""Process wiring for `serve`: database check, Slack app, HTTP or Socket Mode, clean shutdown."""

from __future__ import annotations

import gc
import logging
import sys

from bot.config import Settings
from bot.web import HttpServer, make_wsgi_app

log = logging.getLogger(__name__)


def ensure_migrated(settings: Settings) -> str | None:
    """Return a one-line problem when the schema is not at head, else None."""
    from storage.engine import make_engine
    from storage.migrate import current_revision, head_revision

    engine = make_engine(settings.database_url)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    head = head_revision()
    if current != head:
        return (
            f"database schema is at {current or 'nothing'} but this version needs {head}: "
            "run `runctl-bot migrate` first"
        )
    return None


def settle_heap() -> None:
    """Tune the interpreter for short acks beside long work.

    Everything built at start-up (boto3 models, Bolt, SQLAlchemy) is moved out of the collector's way.

    A full collection otherwise walks those long-lived objects again and again and pauses request threads
    for 100+ ms (seen in the ack benchmark); frozen objects are never collected, which is right for them.
    """
    gc.collect()
    gc.freeze()
    # Hand the GIL over every 1 ms instead of 5 ms: an ack thread waiting behind busy workers gets in sooner.
    sys.setswitchinterval(0.001)


def serve(settings: Settings, *, role: str = "all") -> int:
    problem = ensure_migrated(settings)
    if problem:
        sys.stderr.write(f"runctl-bot: {problem}\n")
        return 2
    from bot.wiring import build_application

    web = role in ("web", "all")
    # With a work process, this one only acks: the scheduler (role all) and all work live in the child.
    split = web and settings.work_process
    application = build_application(settings, role="web" if split else role)
    if split:
        application.use_work_process(scheduler=role == "all")
    handler = None
    if role in ("web", "all") and not settings.socket_mode:
        from slack_bolt.adapter.wsgi import SlackRequestHandler

        handler = SlackRequestHandler(application.slack_app)
    server = HttpServer(
        make_wsgi_app(handler, ready=application.readiness, metrics=application.metrics),
        settings.host,
        settings.port,
        threads=settings.workers,
    )
    socket_handler = None
    if role in ("web", "all") and settings.socket_mode and settings.slack_app_token is not None:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        socket_handler = SocketModeHandler(application.slack_app, settings.slack_app_token.get_secret_value())
        socket_handler.connect()  # type: ignore[no-untyped-call]
        log.info("connected to Slack in Socket Mode")
    application.start()
    settle_heap()
    log.info("runctl-bot %s listening on http://%s:%d (role %s)", "serving", server.host, server.port, role)
    try:
        server.serve_forever()
    finally:
        if socket_handler is not None:
            socket_handler.close()  # type: ignore[no-untyped-call]
        application.stop()
        log.info("stopped cleanly")
    return 0
