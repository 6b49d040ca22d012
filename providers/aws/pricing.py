"""Instance prices: on-demand from the AWS Pricing API (cached), spot from EC2's spot price history.

On-demand lookup order: a fresh cached price (younger than the TTL) -> the Pricing API (`GetProducts`, whose
answer is cached) -> a stale cached price -> the shipped fallback table (`fallback_prices.json`, its date and
sources in its metadata). The API is skipped for a cool-down after it failed, so that an unreachable or denied
API costs one slow failure, not one per price.

Filters use `regionCode` rather than `location`: location names in the price list ("EU (Ireland)") differ from
the region descriptions botocore knows ("Europe (Ireland)"), while the region code is exact.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from providers.aws.calls import AwsCaller
from providers.aws.config import AwsConfig
from providers.base import Lifecycle, Price, PriceCache, PriceSource
from providers.errors import NotFoundError, ProviderError

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client
    from mypy_boto3_pricing import PricingClient

logger = logging.getLogger(__name__)

FALLBACK_TABLE_PATH = Path(__file__).with_name("fallback_prices.json")
PRICING_API_COOLDOWN = timedelta(minutes=15)
SPOT_PRODUCT_DESCRIPTIONS = ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")
_EXPECTED_ATTRIBUTES = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
}
_HOURLY_UNITS = frozenset({"Hrs", "Hours", "Hour", "Hr"})

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def pricing_filters(instance_type: str, region: str) -> list[dict[str, str]]:
    """GetProducts filters for one Linux, shared-tenancy, no-preinstalled-software on-demand instance."""
    values = {"instanceType": instance_type, "regionCode": region, **_EXPECTED_ATTRIBUTES}
    return [{"Type": "TERM_MATCH", "Field": field, "Value": value} for field, value in values.items()]


def _load_document(document: str | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(document, str):
        loaded = json.loads(document)
        if not isinstance(loaded, dict):
            raise ValueError("a PriceList entry must be a JSON object")
        return loaded
    return document


def _matches(attributes: Mapping[str, Any], instance_type: str, region: str | None) -> bool:
    if attributes.get("instanceType") != instance_type:
        return False
    if region is not None and attributes.get("regionCode") not in (None, region):
        return False
    for name, expected in _EXPECTED_ATTRIBUTES.items():
        if name in attributes and attributes[name] != expected:
            return False
    # Linux/UNIX without a SQL licence is operation "RunInstances"; "RunInstances:xxxx" are licensed variants.
    return bool(attributes.get("operation", "RunInstances") == "RunInstances")


def parse_on_demand_price(
    documents: Iterable[str | Mapping[str, Any]], *, instance_type: str, region: str | None = None
) -> float | None:
    """The hourly USD on-demand price in `GetProducts` PriceList entries (JSON strings, as AWS returns them).

    Entries for other types, regions, operating systems, tenancies or licences are ignored. Should several
    prices remain, the highest wins: an estimate that errs high never under-asks for approval.
    """
    candidates: list[float] = []
    for document in documents:
        product = _load_document(document)
        attributes = (product.get("product") or {}).get("attributes") or {}
        if not _matches(attributes, instance_type, region):
            continue
        on_demand = (product.get("terms") or {}).get("OnDemand") or {}
        for term in on_demand.values():
            for dimension in (term.get("priceDimensions") or {}).values():
                if dimension.get("unit") not in _HOURLY_UNITS:
                    continue
                usd = (dimension.get("pricePerUnit") or {}).get("USD")
                if usd is None:
                    continue
                value = float(usd)
                if value > 0:
                    candidates.append(value)
    return max(candidates) if candidates else None


@dataclass(frozen=True)
class FallbackTable:
    region: str
    as_of: datetime
    prices: Mapping[str, float]
    source: str

    @classmethod
    def load(cls, path: Path = FALLBACK_TABLE_PATH) -> FallbackTable:
        raw = json.loads(path.read_text(encoding="utf-8"))
        meta = raw["metadata"]
        as_of = datetime.fromisoformat(str(meta["prices_as_of"])).replace(tzinfo=UTC)
        prices = {str(k): float(v) for k, v in raw["prices"].items()}
        return cls(region=str(meta["region"]), as_of=as_of, prices=prices, source="; ".join(meta["sources"]))

    def price(self, instance_type: str) -> float | None:
        return self.prices.get(instance_type.strip().lower())


class InMemoryPriceCache:
    """A process-local `PriceCache`, for when the bot runs without a database-backed one."""

    def __init__(self) -> None:
        self._prices: dict[tuple[str, str, Lifecycle], Price] = {}
        self._lock = threading.Lock()

    def get_price(self, instance_type: str, region: str, lifecycle: Lifecycle) -> Price | None:
        with self._lock:
            return self._prices.get((instance_type, region, lifecycle))

    def put_price(self, price: Price) -> None:
        with self._lock:
            self._prices[(price.instance_type, price.region, price.lifecycle)] = price


class PriceBook:
    def __init__(
        self,
        *,
        pricing: Callable[[], PricingClient],
        ec2: Callable[[], EC2Client],
        caller: AwsCaller,
        config: AwsConfig,
        cache: PriceCache,
        clock: Clock = utc_now,
        table: FallbackTable | None = None,
    ) -> None:
        self._pricing = pricing
        self._ec2 = ec2
        self._caller = caller
        self._config = config
        self._cache = cache
        self._clock = clock
        self._table = table or FallbackTable.load()
        self._api_blocked_until: datetime | None = None
        self._lock = threading.Lock()

    def on_demand(self, instance_type: str) -> Price:
        instance_type = instance_type.strip().lower()
        region = self._config.region
        now = self._clock()
        cached = self._cache.get_price(instance_type, region, Lifecycle.ON_DEMAND)
        if cached is not None and now - cached.as_of < self._config.price_ttl:
            return replace(cached, source=PriceSource.CACHE)
        api_error: ProviderError | None = None
        if self._api_available(now):
            try:
                hourly = self._query_api(instance_type, region)
            except ProviderError as exc:
                api_error = exc
                self._block_api(now, exc)
            else:
                if hourly is not None:
                    price = Price(
                        instance_type, region, Lifecycle.ON_DEMAND, hourly, PriceSource.PRICING_API, now
                    )
                    self._cache.put_price(price)
                    return price
        if cached is not None:
            logger.info(
                "using a stale cached price for %s (from %s)", instance_type, cached.as_of.isoformat()
            )
            return replace(cached, source=PriceSource.CACHE)
        fallback = self._table.price(instance_type)
        if fallback is not None:
            if region != self._table.region:
                logger.warning(
                    "price of %s: fallback table is for %s, not %s", instance_type, self._table.region, region
                )
            return Price(
                instance_type,
                self._table.region,
                Lifecycle.ON_DEMAND,
                fallback,
                PriceSource.FALLBACK,
                self._table.as_of,
            )
        reason = f" (Pricing API: {api_error})" if api_error is not None else ""
        raise NotFoundError(
            f"no on-demand price known for {instance_type} in {region}{reason}",
            operation="pricing:GetProducts",
        )

    def spot(self, instance_types: Sequence[str]) -> list[Price]:
        """The latest spot price per instance type and availability zone."""
        types = list(dict.fromkeys(t.strip().lower() for t in instance_types if t.strip()))
        if not types:
            return []
        latest: dict[tuple[str, str], Price] = {}
        for page in self._caller.pages(
            "ec2:DescribeSpotPriceHistory",
            self._ec2().describe_spot_price_history,
            {
                "InstanceTypes": types,
                "ProductDescriptions": list(SPOT_PRODUCT_DESCRIPTIONS),
                "StartTime": self._clock(),
                "MaxResults": 1000,
            },
        ):
            for row in page.get("SpotPriceHistory") or ():
                if str(row.get("ProductDescription", "")) not in SPOT_PRODUCT_DESCRIPTIONS:
                    continue
                stamp = row["Timestamp"]
                when = stamp.astimezone(UTC) if stamp.tzinfo else stamp.replace(tzinfo=UTC)
                key = (str(row["InstanceType"]), str(row.get("AvailabilityZone", "")))
                known = latest.get(key)
                if known is None or when > known.as_of:
                    latest[key] = Price(
                        instance_type=key[0],
                        region=self._config.region,
                        lifecycle=Lifecycle.SPOT,
                        hourly_usd=float(row["SpotPrice"]),
                        source=PriceSource.SPOT_HISTORY,
                        as_of=when,
                        availability_zone=key[1] or None,
                    )
        return [latest[key] for key in sorted(latest)]

    def _query_api(self, instance_type: str, region: str) -> float | None:
        documents: list[str | Mapping[str, Any]] = []
        for page in self._caller.pages(
            "pricing:GetProducts",
            self._pricing().get_products,
            {
                "ServiceCode": "AmazonEC2",
                "Filters": pricing_filters(instance_type, region),
                "FormatVersion": "aws_v1",
                "MaxResults": 100,
            },
        ):
            documents.extend(page.get("PriceList") or ())
        try:
            return parse_on_demand_price(documents, instance_type=instance_type, region=region)
        except (ValueError, TypeError, AttributeError) as exc:
            raise ProviderError(
                f"unreadable Pricing API answer: {exc}",
                code="MalformedPriceList",
                operation="pricing:GetProducts",
            ) from exc

    def _api_available(self, now: datetime) -> bool:
        if not self._config.use_pricing_api:
            return False
        with self._lock:
            return self._api_blocked_until is None or now >= self._api_blocked_until

    def _block_api(self, now: datetime, exc: ProviderError) -> None:
        with self._lock:
            self._api_blocked_until = now + PRICING_API_COOLDOWN
        logger.warning(
            "Pricing API unavailable (%s); using cached or shipped prices for %s", exc, PRICING_API_COOLDOWN
        )
