"""Provider name -> factory. Configuration names the enabled providers; the registry builds them.

Factories are registered, not instances, so that importing the registry (and the bot's wiring) never
imports boto3 or opens a connection: a provider is built only when configuration enables it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from providers.base import Provider
from providers.errors import ProviderError

ProviderFactory = Callable[..., Provider]


class RegistryError(ProviderError):
    """A configuration mistake about providers, found before any cloud call."""


class UnknownProviderError(RegistryError, LookupError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        known_list = sorted(known)
        listing = ", ".join(repr(k) for k in known_list) if known_list else "none"
        super().__init__(f"unknown provider {name!r}; known providers: {listing}")
        self.name = name
        self.known = tuple(known_list)


class DuplicateProviderError(RegistryError, ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"provider {name!r} is already registered")
        self.name = name


class ProviderRegistry:
    """Thread-safe map of provider names to factories."""

    def __init__(self) -> None:
        self._factories: dict[str, ProviderFactory] = {}
        self._lock = threading.Lock()

    def register(self, name: str, factory: ProviderFactory) -> None:
        key = _normalise(name)
        with self._lock:
            if key in self._factories:
                raise DuplicateProviderError(key)
            self._factories[key] = factory

    def create(self, name: str, **kwargs: Any) -> Provider:
        key = _normalise(name)
        with self._lock:
            factory = self._factories.get(key)
            known = tuple(self._factories)
        if factory is None:
            raise UnknownProviderError(key, known)
        return factory(**kwargs)

    def create_enabled(self, enabled: Mapping[str, Mapping[str, Any]]) -> dict[str, Provider]:
        """Build every enabled provider, or none: all names are checked before the first is built."""
        known = set(self.names())
        for name in enabled:
            if _normalise(name) not in known:
                raise UnknownProviderError(_normalise(name), known)
        return {_normalise(name): self.create(name, **dict(kwargs)) for name, kwargs in enabled.items()}

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._factories)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and _normalise(name) in self.names()


def _normalise(name: str) -> str:
    key = name.strip().lower()
    if not key:
        raise RegistryError("provider name must not be empty")
    return key


def _create_aws(**kwargs: Any) -> Provider:
    # Imported here so that building the registry does not import boto3.
    from providers.aws.provider import AwsProvider

    return AwsProvider(**kwargs)


def default_registry() -> ProviderRegistry:
    """A registry with every provider this package ships ("aws")."""
    registry = ProviderRegistry()
    registry.register("aws", _create_aws)
    return registry
