from __future__ import annotations

from tests.support.harness import REQUESTER, Bot
from tests.support.moto import run_instances


def test_help_and_list(bot: Bot) -> None:
    run_instances(bot.aws.client("ec2"), 2, tags={"runctl:managed": "true", "runctl:owner": REQUESTER.id})
    response = bot.command(REQUESTER.id, "list --all")
    assert response.status == 200
    bot.wait_idle()
    print(bot.standin.response_posts()[-1])
