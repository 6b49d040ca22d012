"""runctl-bot: run an ML training fleet from Slack, safely."""

__version__ = "0.1.0"
