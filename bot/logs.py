"""Logging set-up: JSON lines in production, plain text on a terminal; tokens never reach a log."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

_SECRET = re.compile(r"(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+|v0=[0-9a-f]{64})")


def redact(text: str) -> str:
    return _SECRET.sub("[redacted]", text)


class RedactingFilter(logging.Filter):
    """Last line of defence: even a token formatted into a message by mistake is masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("request_id", "operation_id", "user", "verb"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def setup_logging(level: str = "INFO", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(
        JsonFormatter()
        if use_json
        else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that chat at INFO (alembic) or log request bodies at DEBUG (botocore) stay quiet
    # unless the operator asks for DEBUG.
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for noisy in ("alembic", "botocore", "urllib3", "waitress.queue", "apscheduler", "slack_bolt"):
        logging.getLogger(noisy).setLevel(quiet)
