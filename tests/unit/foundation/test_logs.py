from __future__ import annotations

import io
import json
import logging

from bot.logs import ContextFilter, JsonFormatter, RedactingFilter, log_context


def _logger() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("runctl-test-logs")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_the_request_and_operation_ids() -> None:
    logger, stream = _logger()
    with log_context(request_id="command:123", operation_id="op-1", user="U1", verb="stop"):
        logger.info("stopping %s", "i-0abc1234")
    logger.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == "stopping i-0abc1234"
    assert (first["request_id"], first["operation_id"], first["user"], first["verb"]) == (
        "command:123",
        "op-1",
        "U1",
        "stop",
    )
    assert "operation_id" not in second


def test_tokens_never_reach_a_log_line() -> None:
    logger, stream = _logger()
    logger.warning("token was %s", "xoxb-1234-5678-abcdefgh")
    logger.warning("app token xapp-1-A0-123-abc")
    out = stream.getvalue()
    assert "xoxb-" not in out and "xapp-" not in out
    assert out.count("[redacted]") == 2
