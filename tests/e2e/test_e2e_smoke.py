from __future__ import annotations

from tests.support.harness import REQUESTER, Bot


def test_help_and_list(bot: Bot) -> None:
    ids = bot.seed(2)
    response = bot.run(REQUESTER.id, "list --all")
    assert response.status == 200
    answer = bot.last_reply(REQUESTER.id)
    assert all(iid in answer for iid in ids)
    assert "2 machine(s) · 2 running" in answer
