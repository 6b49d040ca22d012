"""A strict local Slack (Web API, response URLs, uploads, Socket Mode) for tests and the sandbox.

Start a :class:`SlackStandIn`, point the bot's ``slack_sdk.WebClient`` at ``standin.api_url``, drive
the bot with :mod:`bot.slack.standin.delivery`, and read what Slack would show from the stand-in's
snapshot methods.
"""

from .api import ApiResult
from .blockkit import BlockKitReport, validate_blocks
from .server import SlackStandIn
from .state import (
    Ack,
    Call,
    Channel,
    Envelope,
    Ephemeral,
    Identity,
    Message,
    Notice,
    ResponsePost,
    ResponseUrl,
    StoredFile,
    User,
)

__all__ = [
    "Ack",
    "ApiResult",
    "BlockKitReport",
    "Call",
    "Channel",
    "Envelope",
    "Ephemeral",
    "Identity",
    "Message",
    "Notice",
    "ResponsePost",
    "ResponseUrl",
    "SlackStandIn",
    "StoredFile",
    "User",
    "validate_blocks",
]
