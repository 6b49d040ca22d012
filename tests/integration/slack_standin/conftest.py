"""Fixtures for the Slack stand-in's own tests."""

from tests.support.slack import slack_standin

__all__ = ["slack_standin"]
