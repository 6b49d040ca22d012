"""ProviderRegistry: names to factories, clear errors for unknown and duplicate names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from providers.aws.config import AwsConfig
from providers.aws.provider import AwsProvider
from providers.base import Provider
from providers.registry import (
    DuplicateProviderError,
    ProviderRegistry,
    RegistryError,
    UnknownProviderError,
    default_registry,
)


def test_unknown_name_lists_the_known_ones() -> None:
    registry = default_registry()

    with pytest.raises(UnknownProviderError) as caught:
        registry.create("gcp")

    assert str(caught.value) == "unknown provider 'gcp'; known providers: 'aws'"
    assert caught.value.known == ("aws",)
    assert isinstance(caught.value, LookupError)


def test_empty_registry_says_so() -> None:
    with pytest.raises(UnknownProviderError, match="known providers: none"):
        ProviderRegistry().create("aws")


def test_duplicate_registration_is_an_error() -> None:
    registry = default_registry()

    with pytest.raises(DuplicateProviderError, match="'aws' is already registered"):
        registry.register("AWS ", lambda **_: AwsProvider(AwsConfig()))
    with pytest.raises(RegistryError, match="must not be empty"):
        registry.register("  ", lambda **_: AwsProvider(AwsConfig()))


def test_default_registry_builds_the_aws_provider_without_any_request() -> None:
    registry = default_registry()

    provider = registry.create("aws", config=AwsConfig(region="eu-west-1"))

    assert registry.names() == ["aws"] and "aws" in registry and "gcp" not in registry
    assert isinstance(provider, AwsProvider) and isinstance(provider, Provider)
    assert (provider.name, provider.region) == ("aws", "eu-west-1")


def test_create_enabled_checks_every_name_before_building_any() -> None:
    built: list[str] = []

    def factory(**kwargs: Any) -> Provider:
        built.append(kwargs["tag"])
        return AwsProvider(AwsConfig())

    registry = ProviderRegistry()
    registry.register("aws", factory)

    with pytest.raises(UnknownProviderError, match="'azure'"):
        registry.create_enabled({"aws": {"tag": "a"}, "azure": {}})
    assert built == []

    assert set(registry.create_enabled({"AWS": {"tag": "b"}})) == {"aws"}
    assert built == ["b"]


def test_importing_the_registry_does_not_import_boto3() -> None:
    code = "import sys, providers.registry, providers.base; print('boto3' in sys.modules)"
    repo_root = Path(__file__).resolve().parents[3]

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo_root
    )
    assert result.stdout.strip() == "False"
