"""The AWS implementation of `providers.base.Provider`, on boto3 only."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3

from providers.aws.ami import AmiResolver
from providers.aws.calls import AwsCaller
from providers.aws.clients import AwsClients
from providers.aws.config import AwsConfig
from providers.aws.ec2 import RUNNING_STATES, Ec2Instances, run_instances_request, validate_spec
from providers.aws.metrics import CloudWatchUtilisation
from providers.aws.pricing import FallbackTable, InMemoryPriceCache, PriceBook
from providers.aws.ssm import SsmCommands
from providers.base import (
    CommandResult,
    Instance,
    InstanceState,
    LaunchResult,
    LaunchSpec,
    Lifecycle,
    Price,
    PriceCache,
    UtilisationSeries,
)
from providers.errors import CapacityError, QuotaError

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]
ON_DEMAND_TOKEN_SUFFIX = "-od"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class AwsProvider:
    """EC2 + CloudWatch + SSM + Pricing behind the `Provider` protocol.

    Every method batches (pagination, ≤ 500 metric queries, ≤ 50 instances per command); every request goes
    through the one retry policy in `providers.retry` and fails as a `providers.errors.ProviderError`.
    """

    name = "aws"

    def __init__(
        self,
        config: AwsConfig,
        *,
        price_cache: PriceCache | None = None,
        session: boto3.Session | None = None,
        clock: Clock | None = None,
        fallback_prices: FallbackTable | None = None,
    ) -> None:
        self.config = config
        self.region = config.region
        self._clock = clock or _utc_now
        self.clients = AwsClients(config, session=session)
        self._caller = AwsCaller(config.retry)
        self._prices = PriceBook(
            pricing=lambda: self.clients.pricing,
            ec2=lambda: self.clients.ec2,
            caller=self._caller,
            config=config,
            cache=price_cache if price_cache is not None else InMemoryPriceCache(),
            clock=self._clock,
            table=fallback_prices,
        )
        self._ec2_ops: Ec2Instances | None = None
        self._amis: AmiResolver | None = None
        self._lock = threading.Lock()

    # -- building blocks (lazy: constructing the provider makes no client and no request) --

    @property
    def _ec2(self) -> Ec2Instances:
        with self._lock:
            if self._ec2_ops is None:
                self._ec2_ops = Ec2Instances(
                    self.clients.ec2, self._caller, self.region, page_size=self.config.describe_page_size
                )
            return self._ec2_ops

    @property
    def _ami(self) -> AmiResolver:
        with self._lock:
            if self._amis is None:
                self._amis = AmiResolver(self.clients.ec2, self.clients.ssm, self._caller, self.config)
            return self._amis

    # -- launch --

    def launch(self, spec: LaunchSpec) -> LaunchResult:
        """Launch one machine, tagged at launch; a retried launch never makes a second one.

        Real EC2 deduplicates on `ClientToken` (= the operation id). Before every *retry* the provider also
        looks the operation id up in the `runctl:request` tag, so a request whose answer was lost returns the
        machine it made instead of launching another (moto, the test endpoint, ignores ClientToken).
        """
        validate_spec(spec, self._clock())
        warnings: list[str] = []
        managed = self.list_managed()
        # The quota scan also answers "did this operation already launch?" (a caller retrying after a crash),
        # at no extra request.
        earlier = [i for i in managed if i.operation_id == spec.operation_id]
        if earlier:
            first = min(earlier, key=lambda i: (i.launch_time, i.id))
            return LaunchResult(
                first,
                fell_back_to_on_demand=spec.spot and first.lifecycle is Lifecycle.ON_DEMAND,
                reused_existing=True,
            )
        running = sum(1 for i in managed if i.state in (InstanceState.STARTING, InstanceState.RUNNING))
        if running >= self.config.quota_refuse_at:
            raise QuotaError(
                f"{running} managed instances are running; the limit is {self.config.quota_refuse_at}. "
                "Stop or terminate some before launching more",
                code="ManagedInstanceQuota",
                operation="launch",
            )
        if running >= self.config.quota_warn_at:
            warnings.append(
                f"{running} managed instances are already running "
                f"(warning at {self.config.quota_warn_at}, launches refused at {self.config.quota_refuse_at})"
            )
        image = self._ami.resolve(spec.instance_type, spec.ami_id)
        now = self._clock()
        request = run_instances_request(spec, self.config, image, now=now, spot=spec.spot)
        try:
            instance, reused = self._run_instances(spec.operation_id, request)
        except CapacityError as exc:
            if not (spec.spot and spec.allow_on_demand_fallback):
                raise
            existing = self._ec2.find_by_operation(spec.operation_id)
            if existing is not None:
                return LaunchResult(
                    existing,
                    fell_back_to_on_demand=existing.lifecycle is Lifecycle.ON_DEMAND,
                    reused_existing=True,
                    warnings=tuple(warnings),
                )
            warnings.append(
                f"no spot capacity for {spec.instance_type} ({exc.code}); launched on-demand instead"
            )
            logger.warning(
                "launch %s: spot failed with %s, falling back to on-demand", spec.operation_id, exc.code
            )
            on_demand = run_instances_request(
                spec, self.config, image, now=now, spot=False, token_suffix=ON_DEMAND_TOKEN_SUFFIX
            )
            instance, reused = self._run_instances(spec.operation_id, on_demand)
            return LaunchResult(
                instance, fell_back_to_on_demand=True, reused_existing=reused, warnings=tuple(warnings)
            )
        return LaunchResult(
            instance, fell_back_to_on_demand=False, reused_existing=reused, warnings=tuple(warnings)
        )

    def _run_instances(self, operation_id: str, request: Mapping[str, Any]) -> tuple[Instance, bool]:
        def attempt(number: int) -> tuple[Instance, bool]:
            if number > 1:
                # Raw look-up (no nested retry): a failure here fails this attempt and the loop retries it.
                existing = self._ec2.find_by_operation(operation_id, retried=False)
                if existing is not None:
                    logger.info(
                        "launch %s: attempt %d found %s from an earlier attempt; not launching again",
                        operation_id,
                        number,
                        existing.id,
                    )
                    return existing, True
            return self._ec2.run(request), False

        return self._caller.call_attempts("ec2:RunInstances", attempt)

    # -- listing --

    def list_managed(self) -> list[Instance]:
        """Managed instances in every state but terminated: one paginated scan, classified in code."""
        return [i for i in self._ec2.scan() if i.managed]

    def list_unmanaged_running(self) -> list[Instance]:
        """Pending or running instances without runctl tags, for reports only: rules never act on them."""
        return [i for i in self._ec2.scan(RUNNING_STATES) if not i.managed]

    def list_all(self) -> list[Instance]:
        """Every non-terminated instance, managed or not (one scan), for `resources list --all`."""
        return list(self._ec2.scan())

    def describe(self, instance_id: str) -> Instance | None:
        return self._ec2.describe(instance_id)

    def describe_many(self, instance_ids: Sequence[str]) -> dict[str, Instance]:
        return self._ec2.describe_many(instance_ids)

    def find_by_operation(self, operation_id: str) -> Instance | None:
        return self._ec2.find_by_operation(operation_id)

    # -- state and tags --

    def start(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]:
        return self._ec2.start(instance_ids)

    def stop(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]:
        return self._ec2.stop(instance_ids)

    def terminate(self, instance_ids: Sequence[str]) -> dict[str, InstanceState]:
        return self._ec2.terminate(instance_ids)

    def set_tags(self, instance_ids: Sequence[str], tags: Mapping[str, str]) -> None:
        self._ec2.create_tags(instance_ids, tags)

    def remove_tags(self, instance_ids: Sequence[str], keys: Sequence[str]) -> None:
        self._ec2.delete_tags(instance_ids, keys)

    # -- metrics, commands, prices --

    def utilisation(
        self,
        instance_ids: Sequence[str],
        *,
        end: datetime,
        window: timedelta,
        period_seconds: int = 300,
        statistic: str | None = None,
        instance_types: Mapping[str, str] | None = None,
    ) -> dict[str, dict[str, UtilisationSeries]]:
        """`{instance_id: {"cpu": series, "gpu": series}}`; "gpu" only when a GPU metric is configured, and
        only for machines whose type may have an accelerator.

        `statistic` defaults to the configured one ("Maximum": one busy minute in a period counts).
        `instance_types` (id to type) spares a DescribeInstances when a GPU metric is configured; without
        it the types are described by id.
        """
        metrics = CloudWatchUtilisation(
            self.clients.cloudwatch,
            self._caller,
            self.config,
            instance_types=lambda ids: {i: x.instance_type for i, x in self._ec2.describe_many(ids).items()},
        )
        return metrics.fetch(
            instance_ids,
            end=end,
            window=window,
            period_seconds=period_seconds,
            statistic=statistic,
            instance_types=instance_types,
        )

    def run_command(self, instance_ids: Sequence[str], script: str, *, comment: str = "") -> list[str]:
        commands = SsmCommands(
            self.clients.ssm, self._caller, timeout_seconds=self.config.command_timeout_seconds
        )
        return commands.send(instance_ids, script, comment=comment)

    def command_results(self, command_id: str, instance_ids: Sequence[str]) -> list[CommandResult]:
        commands = SsmCommands(
            self.clients.ssm, self._caller, timeout_seconds=self.config.command_timeout_seconds
        )
        return commands.results(command_id, instance_ids)

    def on_demand_price(self, instance_type: str) -> Price:
        return self._prices.on_demand(instance_type)

    def spot_prices(self, instance_types: Sequence[str]) -> list[Price]:
        return self._prices.spot(instance_types)
