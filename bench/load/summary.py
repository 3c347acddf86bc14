"""What one Locust phase of bench/load measured: rates, outcomes and latency percentiles in its window."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

Sample = Sequence[Any]  # (name, finished at [epoch s], latency [ms], HTTP status; 0 = no response)


def latency(values: Iterable[float]) -> dict[str, float | int | None]:
    """Median, p95, p99 and max in ms (linear interpolation between ranks), and how many."""
    array = np.fromiter(values, dtype=float)
    if array.size == 0:
        return {"n": 0, "median": None, "p95": None, "p99": None, "max": None}
    median, p95, p99 = np.percentile(array, [50, 95, 99])
    return {
        "n": int(array.size),
        "median": round(float(median), 1),
        "p95": round(float(p95), 1),
        "p99": round(float(p99), 1),
        "max": round(float(array.max()), 1),
    }


def summarize(samples: Sequence[Sample], start: float, end: float, offered_per_s: float | None) -> dict[str, Any]:
    """The requests that finished in [start, end]: accepted submissions/s (201), refusals (409),
    errors (5xx or no response), 204s of ``next``, and ``next`` / submit latency percentiles."""
    seconds = max(end - start, 1e-9)
    inside = [s for s in samples if start <= s[1] <= end]
    nexts = [s for s in inside if s[0] == "next"]
    submits = [s for s in inside if s[0] == "submit"]
    accepted = sum(1 for s in submits if s[3] == 201)
    result: dict[str, Any] = {
        "window_seconds": round(seconds, 2),
        "accepted": accepted,
        "accepted_per_s": round(accepted / seconds, 2),
        "refused_409": sum(1 for s in submits if s[3] == 409),
        "next_empty_204": sum(1 for s in nexts if s[3] == 204),
        "errors": sum(1 for s in inside if s[3] == 0 or s[3] >= 500),
        "other_4xx": sum(1 for s in inside if 400 <= s[3] < 500 and not (s[0] == "submit" and s[3] == 409)),
        "requests_per_s": round(len(inside) / seconds, 1),
        "next_ms": latency(s[2] for s in nexts if s[3] in (200, 204)),
        "submit_ms": latency(s[2] for s in submits if s[3] in (201, 409)),
    }
    if offered_per_s:
        result["offered_per_s"] = round(offered_per_s, 2)
        result["achieved_share"] = round(accepted / seconds / offered_per_s, 3)
    return result


def last_accepted(samples: Iterable[Sample]) -> float | None:
    """When the last accepted submission (201) of the phase was answered, in epoch seconds."""
    return max((s[1] for s in samples if s[0] == "submit" and s[3] == 201), default=None)
