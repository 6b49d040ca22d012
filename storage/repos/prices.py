"""The on-demand price cache behind `providers.base.PriceCache`, kept in the database across restarts."""

from __future__ import annotations

from sqlalchemy import Engine

from providers.base import Lifecycle, Price, PriceSource
from storage.engine import session_scope
from storage.models import PriceCacheEntry
from storage.repos._common import require_aware, table_of, upsert_insert


class PriceCacheRepository:
    """Implements `providers.base.PriceCache`. One price per (type, region, lifecycle); the last put wins."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def get_price(self, instance_type: str, region: str, lifecycle: Lifecycle) -> Price | None:
        """The stored price with its original source and `as_of`; the caller decides if it is too old."""
        with session_scope(self._engine) as session:
            row = session.get(PriceCacheEntry, (instance_type, region, Lifecycle(lifecycle).value))
        if row is None:
            return None
        return Price(
            instance_type=row.instance_type,
            region=row.region,
            lifecycle=Lifecycle(row.lifecycle),
            hourly_usd=row.hourly_usd,
            source=PriceSource(row.source),
            as_of=row.as_of,
        )

    def put_price(self, price: Price) -> None:
        require_aware(price.as_of, "as_of")
        values = {
            "hourly_usd": price.hourly_usd,
            "source": PriceSource(price.source).value,
            "as_of": price.as_of,
        }
        statement = (
            upsert_insert(self._engine, table_of(PriceCacheEntry))
            .values(
                instance_type=price.instance_type,
                region=price.region,
                lifecycle=Lifecycle(price.lifecycle).value,
                **values,
            )
            .on_conflict_do_update(index_elements=["instance_type", "region", "lifecycle"], set_=values)
        )
        with session_scope(self._engine, write=True) as session:
            session.exec(statement)
