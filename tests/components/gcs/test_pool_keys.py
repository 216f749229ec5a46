"""Pool keys of Cloud Storage backups: spread over many key ranges, stable for one generation."""

from __future__ import annotations

import re

import pytest

from tasks.components.gcs.plan import pool_key, pool_prefix

pytestmark = pytest.mark.unit


def test_consecutive_generations_land_in_many_key_ranges() -> None:
    start = 1_732_900_000_000_000  # generations are microsecond timestamps: new data is consecutive
    keys = [pool_key("raw", f"events/{g}.json", start + g) for g in range(1000)]
    spread = [key.removeprefix(pool_prefix("raw")).split("/")[0] for key in keys]
    assert all(re.fullmatch("[0-9a-f]{4}", s) for s in spread)
    assert len(set(spread)) > 950  # 1,000 new objects, (almost) each in its own range
    assert keys[0] == f"pool/gcs/raw/{spread[0]}/{start}/events/0.json"


def test_a_generation_always_has_the_same_key() -> None:
    assert pool_key("raw", "a/b.csv", 7) == pool_key("raw", "a/b.csv", 7)
    assert (
        len({pool_key("raw", "a/b.csv", 7), pool_key("raw", "a/b.csv", 8), pool_key("cur", "a/b.csv", 7)})
        == 3
    )
