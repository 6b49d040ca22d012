"""Hourly prices per machine: on-demand from the provider (cached in the database), spot from history."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from providers.base import Instance, Lifecycle, Provider
from providers.errors import ProviderError

log = logging.getLogger(__name__)


class Prices:
    def __init__(self, provider: Provider) -> None:
        self._provider = provider

    def on_demand(self, instance_type: str) -> float | None:
        try:
            return self._provider.on_demand_price(instance_type).hourly_usd
        except ProviderError as exc:
            log.warning("no on-demand price for %s: %s", instance_type, exc)
            return None

    def spot(self, instance_types: Iterable[str]) -> dict[str, float]:
        """Cheapest current spot price per type (one batched call)."""
        types = sorted(set(instance_types))
        if not types:
            return {}
        try:
            prices = self._provider.spot_prices(types)
        except ProviderError as exc:
            log.warning("no spot prices for %s: %s", ", ".join(types), exc)
            return {}
        best: dict[str, float] = {}
        for price in prices:
            if price.instance_type not in best or price.hourly_usd < best[price.instance_type]:
                best[price.instance_type] = price.hourly_usd
        return best

    def hourly_by_instance(self, instances: Iterable[Instance]) -> dict[str, float]:
        """$/h in force now for each machine; spot machines at spot price, falling back to on-demand."""
        items = list(instances)
        spot = self.spot(i.instance_type for i in items if i.lifecycle is Lifecycle.SPOT)
        on_demand: dict[str, float | None] = {}
        out: dict[str, float] = {}
        for inst in items:
            if inst.lifecycle is Lifecycle.SPOT and inst.instance_type in spot:
                out[inst.id] = spot[inst.instance_type]
                continue
            if inst.instance_type not in on_demand:
                on_demand[inst.instance_type] = self.on_demand(inst.instance_type)
            price = on_demand[inst.instance_type]
            if price is not None:
                out[inst.id] = price
        return out

    def estimate(self, instance_type: str, *, spot: bool) -> tuple[float | None, str]:
        """A launch estimate: ($/h, how it was priced)."""
        if spot:
            found = self.spot([instance_type]).get(instance_type)
            if found is not None:
                return found, "spot, from the latest price history"
        price = self.on_demand(instance_type)
        return price, "on-demand"
