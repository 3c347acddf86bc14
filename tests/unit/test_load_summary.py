"""bench/load's phase summary: what counts as accepted, refused or an error, and which requests are in the window."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

_spec = importlib.util.spec_from_file_location(
    "load_summary", Path(__file__).resolve().parents[2] / "bench" / "load" / "summary.py"
)
assert _spec is not None and _spec.loader is not None
summary = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(summary)


def test_outcomes_and_rates_count_only_the_window() -> None:
    samples = [
        ("submit", 99.0, 5.0, 201),  # before the window
        ("next", 100.5, 10.0, 200),
        ("submit", 101.0, 20.0, 201),
        ("submit", 102.0, 30.0, 409),  # a refusal, not an error
        ("next", 103.0, 40.0, 204),
        ("submit", 104.0, 50.0, 503),
        ("next", 105.0, 60.0, 0),  # no answer at all
        ("next", 106.0, 70.0, 403),
        ("submit", 110.5, 80.0, 201),  # after it
    ]
    result = summary.summarize(samples, 100.0, 110.0, offered_per_s=0.2)
    assert result["accepted"] == 1
    assert result["accepted_per_s"] == 0.1
    assert result["achieved_share"] == 0.5
    assert (result["refused_409"], result["next_empty_204"], result["errors"], result["other_4xx"]) == (1, 1, 2, 1)
    assert result["next_ms"]["n"] == 2 and result["next_ms"]["median"] == 25.0  # 200 and 204, not the failures
    assert result["submit_ms"]["n"] == 2 and result["submit_ms"]["max"] == 30.0  # 201 and 409
    assert summary.last_accepted(samples) == 110.5


def test_percentiles_interpolate_and_an_empty_phase_has_none() -> None:
    stats = summary.latency(float(v) for v in range(1, 102))
    assert (stats["n"], stats["median"], stats["p95"], stats["p99"], stats["max"]) == (101, 51.0, 96.0, 100.0, 101.0)
    assert summary.latency([]) == {"n": 0, "median": None, "p95": None, "p99": None, "max": None}
