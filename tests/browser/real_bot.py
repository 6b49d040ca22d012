"""Helpers for driving the *real* sandbox (`running_sandbox`: moto, the demo fleet, the production bot).

`running_sandbox` writes its settings into ``os.environ`` and runs moto in this process, whose resources
live in moto's process-wide backends. :func:`isolated_sandbox` therefore empties moto before and after,
and puts the environment back exactly as it found it, so neither earlier nor later tests see its traces.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from playwright.sync_api import BrowserContext, Page, expect

from bot.sandbox.runner import REGION, Sandbox, running_sandbox

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client


def _reset_moto() -> None:
    """Forget every resource in this process's moto (what ``POST /moto-api/reset`` does over HTTP)."""
    from moto.moto_api._internal.models import moto_api_backend

    moto_api_backend.reset()


@contextmanager
def isolated_sandbox(data_dir: Path) -> Iterator[Sandbox]:
    """The real sandbox on a free port with its own data directory; environment and moto restored after."""
    saved = dict(os.environ)
    _reset_moto()
    try:
        with running_sandbox(port=0, data_dir=data_dir) as sandbox:
            yield sandbox
    finally:
        _reset_moto()
        os.environ.clear()
        os.environ.update(saved)


def sandbox_ec2() -> EC2Client:
    """EC2 on the running sandbox's moto (its endpoint is in the environment while it runs)."""
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    client: EC2Client = boto3.client(
        "ec2",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="sandbox",
        aws_secret_access_key="sandbox",
        config=Config(
            retries={"total_max_attempts": 2, "mode": "standard"}, connect_timeout=5, read_timeout=20
        ),
    )
    return client


def instance_state(ec2: EC2Client, instance_id: str) -> str:
    [reservation] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return reservation["Instances"][0]["State"]["Name"]


def instance_tags(ec2: EC2Client, instance_id: str) -> dict[str, str]:
    [reservation] = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    [instance] = reservation["Instances"]
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def wait_until_terminated(ec2: EC2Client, instance_id: str, *, seconds: int = 30) -> str:
    """Bounded wait (boto3's own waiter, polling every second) for the cloud to report ``terminated``."""
    ec2.get_waiter("instance_terminated").wait(
        InstanceIds=[instance_id], WaiterConfig={"Delay": 1, "MaxAttempts": seconds}
    )
    return instance_state(ec2, instance_id)


@dataclass
class PageWatch:
    """What the page did that it must not: JavaScript errors, and requests that left the sandbox."""

    origin: str
    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        foreign = [u for u in self.urls if not (u.startswith(self.origin + "/") or u.startswith("data:"))]
        return [f"JavaScript error: {e}" for e in self.errors] + [f"left the sandbox: {u}" for u in foreign]


def open_sandbox_page(browser: BrowserContext, url: str, user_id: str) -> tuple[Page, PageWatch]:
    """The sandbox page as ``user_id``, once its live updates are connected."""
    page = browser.new_page()
    watch = PageWatch(origin=url)
    page.on("request", lambda request: watch.urls.append(request.url))
    page.on("pageerror", lambda error: watch.errors.append(str(error)))
    page.goto(f"{url}/#as={user_id}")
    expect(page.locator("#connection-status")).to_have_text("live")
    return page, watch
