"""The decision patterns of libs/consensus/_patterns.py against the previous algorithm.

bench/staple/reference.py is a verbatim copy of `_patterns.py` before the rewrite that brought
STAPLE closer to the memory floor. On the three crowds of `run.py` this checks that both give
bit-identical patterns (every field of `DecisionPatterns`, dtypes included) and the same STAPLE
posterior, and times both, interleaved, with one pass over the votes for scale.

    .venv/bin/python bench/staple/compare_with_previous.py            # the issue's sizes
    .venv/bin/python bench/staple/compare_with_previous.py --quick    # small sizes
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from crowdseg.consensus import _patterns as current  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))
import reference as previous  # noqa: E402

from tests.unit.consensus.crowds import blob_truth, boundary_crowd  # noqa: E402

FULL = [(30, (1024, 1024)), (40, (2048, 2048)), (10, (64, 512, 512))]
QUICK = [(30, (256, 256)), (40, (512, 512)), (10, (16, 128, 128))]


def assert_identical(new: Any, old: Any) -> None:
    """Every field equal in value, shape and dtype."""
    for field in dataclasses.fields(new):
        mine, theirs = getattr(new, field.name), getattr(old, field.name)
        if mine.dtype != theirs.dtype or not np.array_equal(mine, theirs):
            raise AssertionError(f"{field.name}: {mine.dtype} {mine.shape} != {theirs.dtype} {theirs.shape}")


def interleaved_medians(runs: dict[str, Callable[[], Any]], repetitions: int) -> dict[str, float]:
    """Median seconds of each run, the runs taking turns so that load swings hit all alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repetitions):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(spent) for name, spent in times.items()}


def compare(masks: np.ndarray, repetitions: int) -> dict[str, float]:
    assert_identical(current.decision_patterns(masks), previous.decision_patterns(masks))
    return interleaved_medians(
        {
            "pass": lambda: masks.sum(axis=0, dtype=np.uint8),
            "previous": lambda: previous.decision_patterns(masks),
            "current": lambda: current.decision_patterns(masks),
        },
        repetitions,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small crowds")
    parser.add_argument("--repetitions", type=int, default=11, help="interleaved runs per crowd (median)")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}")
    for seed, (raters, shape) in enumerate(QUICK if args.quick else FULL):
        rng = np.random.default_rng(seed)
        masks, _ = boundary_crowd(blob_truth(shape, rng), raters, rng, bad_share=0.2)
        seconds = compare(masks, args.repetitions)
        print(
            f"{raters} × {'×'.join(map(str, shape))}: identical; pass {seconds['pass'] * 1e3:.1f} ms,"
            f" previous {seconds['previous'] * 1e3:.1f} ms ({seconds['previous'] / seconds['pass']:.1f}×),"
            f" current {seconds['current'] * 1e3:.1f} ms ({seconds['current'] / seconds['pass']:.1f}×)",
            flush=True,
        )
    print(f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
