"""The training verbs through Slack: signed `/runctl train|jobs|logs|checkpoints` into the real app."""

from __future__ import annotations

from typing import Any

from tests.support.harness import Bot
from tests.support.moto import run_instances
from tests.support.slack import BOB, CAROL, FLEET


def test_train_from_slack_records_the_job_and_sends_one_ssm_command(bot: Bot, s3: Any) -> None:
    s3.create_bucket(Bucket="ml-code")
    s3.put_object(Bucket="ml-code", Key="proj/code.tar.gz", Body=b"not really a tarball")
    (iid,) = run_instances(bot.aws.client("ec2"), 1, tags={"runctl:managed": "true", "runctl:owner": BOB.id})
    bot.calls.reset()
    response = bot.command(
        BOB.id,
        f"train {iid} s3://ml-code/proj/code.tar.gz --output s3://ml-code/out/ --env LR=0.1 -- --epochs 3",
        channel=FLEET.id,
    )
    assert response.status == 200
    bot.wait_idle()
    (job,) = bot.repos.jobs.list_for_owner(BOB.id)
    assert job.instance_id == iid and job.status == "starting" and job.command_id
    assert job.args == ["--epochs", "3"] and job.env == {"LR": "0.1"}
    assert bot.calls.count("ssm.SendCommand") == 1
    assert any(job.id in m.text for m in bot.standin.messages(FLEET.id))

    jobs = bot.command(BOB.id, "jobs")
    assert jobs.status == 200
    bot.wait_idle()
    assert any(job.id in str(p.payload) for p in bot.standin.response_posts())

    refused = bot.command(CAROL.id, f"train {iid} s3://ml-code/proj/code.tar.gz", channel=FLEET.id)
    assert refused.status == 200
    bot.wait_idle()
    assert len(bot.repos.jobs.list_for_owner(CAROL.id)) == 0
