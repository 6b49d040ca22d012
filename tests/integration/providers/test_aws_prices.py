"""Prices: the GetProducts parser on documents shaped as AWS documents them, the cache TTL, the shipped
fallback (for real: moto has no Pricing API) and spot prices from moto's spot price history."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from providers.aws.pricing import FallbackTable, InMemoryPriceCache, parse_on_demand_price, pricing_filters
from providers.aws.provider import AwsProvider
from providers.base import Lifecycle, Price, PriceSource
from providers.errors import NotFoundError
from tests.support.moto import ApiCallCounter, FaultInjector

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


@dataclass
class FakeClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


def price_document(
    instance_type: str,
    usd: str,
    *,
    sku: str = "QG5G45WKDWDDHTFV",
    **attributes: str,
) -> str:
    """One PriceList entry as GetProducts returns it: a JSON *string* with product, terms and metadata."""
    attrs = {
        "enhancedNetworkingSupported": "Yes",
        "intelTurboAvailable": "Yes",
        "memory": "1 GiB",
        "dedicatedEbsThroughput": "Up to 2085 Mbps",
        "vcpu": "2",
        "classicnetworkingsupport": "false",
        "capacitystatus": "Used",
        "locationType": "AWS Region",
        "storage": "EBS only",
        "instanceFamily": "General purpose",
        "operatingSystem": "Linux",
        "intelAvx2Available": "Yes",
        "regionCode": "us-east-1",
        "physicalProcessor": "Intel Skylake E5 2686 v5",
        "clockSpeed": "3.1 GHz",
        "ecu": "Variable",
        "networkPerformance": "Up to 5 Gigabit",
        "servicename": "Amazon Elastic Compute Cloud",
        "gpuMemory": "NA",
        "vpcnetworkingsupport": "true",
        "instanceType": instance_type,
        "tenancy": "Shared",
        "usagetype": f"BoxUsage:{instance_type}",
        "normalizationSizeFactor": "0.5",
        "intelAvxAvailable": "Yes",
        "processorFeatures": "AVX; AVX2; Intel AVX; Intel AVX2; Intel AVX512; Intel Turbo",
        "servicecode": "AmazonEC2",
        "licenseModel": "No License required",
        "currentGeneration": "Yes",
        "preInstalledSw": "NA",
        "location": "US East (N. Virginia)",
        "processorArchitecture": "64-bit",
        "marketoption": "OnDemand",
        "operation": "RunInstances",
        "availabilityzone": "NA",
    }
    attrs.update(attributes)
    on_demand_code, rate_code, reserved_code = "JRTCKXETXF", "6YS6EN2CT7", "4NA7Y494T4"
    document = {
        "product": {"productFamily": "Compute Instance", "attributes": attrs, "sku": sku},
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                f"{sku}.{on_demand_code}": {
                    "priceDimensions": {
                        f"{sku}.{on_demand_code}.{rate_code}": {
                            "unit": "Hrs",
                            "endRange": "Inf",
                            "description": f"${usd} per On Demand Linux {instance_type} Instance Hour",
                            "appliesTo": [],
                            "rateCode": f"{sku}.{on_demand_code}.{rate_code}",
                            "beginRange": "0",
                            "pricePerUnit": {"USD": usd},
                        }
                    },
                    "sku": sku,
                    "effectiveDate": "2026-02-01T00:00:00Z",
                    "offerTermCode": on_demand_code,
                    "termAttributes": {},
                }
            },
            "Reserved": {
                f"{sku}.{reserved_code}": {
                    "priceDimensions": {
                        f"{sku}.{reserved_code}.2TG2D8R56U": {
                            "unit": "Quantity",
                            "description": "Upfront Fee",
                            "appliesTo": [],
                            "rateCode": f"{sku}.{reserved_code}.2TG2D8R56U",
                            "pricePerUnit": {"USD": "53"},
                        },
                        f"{sku}.{reserved_code}.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "endRange": "Inf",
                            "description": f"{instance_type} reserved instance applied",
                            "appliesTo": [],
                            "rateCode": f"{sku}.{reserved_code}.6YS6EN2CT7",
                            "beginRange": "0",
                            "pricePerUnit": {"USD": "0.0060000000"},
                        },
                    },
                    "sku": sku,
                    "effectiveDate": "2026-02-01T00:00:00Z",
                    "offerTermCode": reserved_code,
                    "termAttributes": {
                        "LeaseContractLength": "1yr",
                        "OfferingClass": "standard",
                        "PurchaseOption": "Partial Upfront",
                    },
                }
            },
        },
        "version": "20260215000000",
        "publicationDate": "2026-02-15T00:00:00Z",
    }
    return json.dumps(document)


def get_products_answer(*documents: str) -> dict[str, Any]:
    return {"FormatVersion": "aws_v1", "PriceList": list(documents)}


T3_MICRO_DOCUMENTS = (
    price_document("t3.micro", "0.0104000000"),
    # Same type, other products GetProducts can return next to it: none of them is the Linux on-demand price.
    price_document(
        "t3.micro", "0.0196000000", sku="WIN", operatingSystem="Windows", operation="RunInstances:0002"
    ),
    price_document("t3.micro", "0.0104000000", sku="UNUSED", capacitystatus="UnusedCapacityReservation"),
    price_document("t3.micro", "0.0000000000", sku="ALLOC", capacitystatus="AllocatedCapacityReservation"),
    price_document("t3.micro", "0.0130000000", sku="DEDI", tenancy="Dedicated"),
    price_document(
        "t3.micro", "0.0304000000", sku="SQL", preInstalledSw="SQL Web", operation="RunInstances:0200"
    ),
    price_document("t3.micro", "0.0124000000", sku="EU", regionCode="eu-west-1", location="EU (Ireland)"),
    price_document("t3.small", "0.0208000000", sku="SMALL"),
)


def test_parser_picks_the_linux_shared_on_demand_hourly_price() -> None:
    assert parse_on_demand_price(T3_MICRO_DOCUMENTS, instance_type="t3.micro", region="us-east-1") == 0.0104
    assert parse_on_demand_price(T3_MICRO_DOCUMENTS, instance_type="t3.small", region="us-east-1") == 0.0208
    assert parse_on_demand_price(T3_MICRO_DOCUMENTS, instance_type="t3.micro", region="eu-west-1") == 0.0124
    # Decoded documents work as well as the JSON strings.
    decoded = [json.loads(d) for d in T3_MICRO_DOCUMENTS]
    assert parse_on_demand_price(decoded, instance_type="t3.micro", region="us-east-1") == 0.0104


def test_parser_finds_nothing_without_a_matching_on_demand_term() -> None:
    assert parse_on_demand_price([], instance_type="t3.micro") is None
    assert parse_on_demand_price(T3_MICRO_DOCUMENTS, instance_type="g5.xlarge") is None
    reserved_only = json.loads(price_document("t3.micro", "0.0104"))
    reserved_only["terms"].pop("OnDemand")
    assert parse_on_demand_price([json.dumps(reserved_only)], instance_type="t3.micro") is None
    with pytest.raises(ValueError):
        parse_on_demand_price(["[1, 2]"], instance_type="t3.micro")


def test_pricing_filters_are_term_matches_for_linux_shared_used_capacity() -> None:
    filters = {f["Field"]: f["Value"] for f in pricing_filters("g5.xlarge", "us-west-2")}
    assert filters == {
        "instanceType": "g5.xlarge",
        "regionCode": "us-west-2",
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
    }
    assert {f["Type"] for f in pricing_filters("g5.xlarge", "us-west-2")} == {"TERM_MATCH"}


def test_api_price_is_cached_for_the_ttl(
    make_provider: Callable[..., AwsProvider], calls: ApiCallCounter, faults: FaultInjector
) -> None:
    clock = FakeClock()
    cache = InMemoryPriceCache()
    provider = make_provider(clock=clock, price_cache=cache, price_ttl=timedelta(hours=24))
    faults.respond("pricing", "GetProducts", get_products_answer(*T3_MICRO_DOCUMENTS))

    first = provider.on_demand_price("t3.micro")
    assert (first.hourly_usd, first.source, first.as_of, first.lifecycle) == (
        0.0104,
        PriceSource.PRICING_API,
        T0,
        Lifecycle.ON_DEMAND,
    )
    assert cache.get_price("t3.micro", "us-east-1", Lifecycle.ON_DEMAND) == first
    [request] = calls.params("pricing.GetProducts")
    assert request["ServiceCode"] == "AmazonEC2" and request["Filters"] == pricing_filters(
        "t3.micro", "us-east-1"
    )

    clock.advance(timedelta(hours=23, minutes=59))
    cached = provider.on_demand_price("t3.micro")
    assert cached.source is PriceSource.CACHE and cached.hourly_usd == 0.0104 and cached.as_of == T0
    assert calls.count("pricing.GetProducts") == 1

    clock.advance(timedelta(minutes=2))  # now older than the TTL: ask the API again
    refreshed = provider.on_demand_price("t3.micro")
    assert refreshed.source is PriceSource.PRICING_API and refreshed.as_of == clock.now
    assert calls.count("pricing.GetProducts") == 2


def test_unreachable_pricing_api_falls_back_to_the_shipped_table(
    provider: AwsProvider, calls: ApiCallCounter
) -> None:
    # moto has no Pricing API: the request really goes out and really fails (HTTP 500), every attempt.
    price = provider.on_demand_price("t3.micro")

    assert price.source is PriceSource.FALLBACK
    assert price.hourly_usd == 0.0104 and price.region == "us-east-1"
    assert price.as_of == FallbackTable.load().as_of
    assert calls.count("pricing.GetProducts") == provider.config.retry.max_attempts

    # The failure is remembered for a while: the next price does not wait for the API again.
    assert provider.on_demand_price("g4dn.xlarge").hourly_usd == 0.526
    assert calls.count("pricing.GetProducts") == provider.config.retry.max_attempts


def test_denied_pricing_api_falls_back_at_once(
    provider: AwsProvider, calls: ApiCallCounter, faults: FaultInjector
) -> None:
    faults.error("pricing", "GetProducts", code="AccessDeniedException", status=400, message="not allowed")

    price = provider.on_demand_price("p3.2xlarge")

    assert (price.source, price.hourly_usd) == (PriceSource.FALLBACK, 3.06)
    assert calls.count("pricing.GetProducts") == 1


def test_stale_cached_price_beats_the_shipped_table(make_provider: Callable[..., AwsProvider]) -> None:
    cache = InMemoryPriceCache()
    stale = Price(
        "t3.micro", "us-east-1", Lifecycle.ON_DEMAND, 0.0111, PriceSource.PRICING_API, T0 - timedelta(days=9)
    )
    cache.put_price(stale)
    provider = make_provider(clock=FakeClock(), price_cache=cache)

    price = provider.on_demand_price("t3.micro")

    assert (price.source, price.hourly_usd, price.as_of) == (PriceSource.CACHE, 0.0111, stale.as_of)


def test_unknown_type_without_api_is_not_found(provider: AwsProvider) -> None:
    with pytest.raises(NotFoundError, match=r"no on-demand price known for x9z\.huge"):
        provider.on_demand_price("x9z.huge")


def test_shipped_table_documents_its_date_and_sources() -> None:
    table = FallbackTable.load()
    assert table.region == "us-east-1"
    assert table.as_of == datetime(2025, 5, 31, tzinfo=UTC)
    assert "runctl" in table.source and "aws.amazon.com/ec2/pricing" in table.source
    assert all(price > 0 for price in table.prices.values())
    # runctl's table (reference §3.5) rows that match AWS list prices are carried over unchanged.
    for instance_type, usd in {
        "t3.micro": 0.0104,
        "g4dn.xlarge": 0.526,
        "g5.xlarge": 1.006,
        "p3.2xlarge": 3.06,
    }.items():
        assert table.price(instance_type) == usd


def test_spot_prices_latest_per_type_and_zone(provider: AwsProvider, calls: ApiCallCounter) -> None:
    prices = provider.spot_prices(["t3.micro", "m5.large", "t3.micro"])

    assert calls.count("ec2.DescribeSpotPriceHistory") == 1
    assert {p.instance_type for p in prices} == {"t3.micro", "m5.large"}
    keys = [(p.instance_type, p.availability_zone) for p in prices]
    assert len(keys) == len(set(keys)) and all(zone and zone.startswith("us-east-1") for _, zone in keys)
    assert all(p.lifecycle is Lifecycle.SPOT and p.source is PriceSource.SPOT_HISTORY for p in prices)
    assert all(p.hourly_usd > 0 and p.as_of.tzinfo is not None for p in prices)
    assert provider.spot_prices([]) == []
