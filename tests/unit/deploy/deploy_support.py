"""Shared by the deployment consistency tests: the repository root and its product code as syntax trees."""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Source:
    path: Path
    tree: ast.Module

    def where(self, node: ast.AST) -> str:
        """`bot/slack/notifier.py:32`: how a failure points at the call."""
        path = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path
        return f"{path}:{getattr(node, 'lineno', 0)}"


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def product_sources(roots: Iterable[Path], *, excluding: Iterable[Path] = ()) -> Iterator[Source]:
    """Every Python file under `roots` except those under `excluding`, parsed once per test session."""
    skipped = tuple(excluding)
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if any(path.is_relative_to(part) for part in skipped):
                continue
            yield Source(path, _parse(path))
