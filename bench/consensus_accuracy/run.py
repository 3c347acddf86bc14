"""Mask consensus accuracy: the service's default against both STAPLE regions, majority vote and Crowd-Kit.

A grid of synthetic crowds with a known truth (tests/unit/consensus/crowds.py, ``grid_crowd``):
crowd kinds (all good raters with tight or loose symmetric size noise; a third of the raters bad:
spammers drawing random blobs, shifted outlines, over- and under-drawers, raters who skip part of
the object, a mix of all of these) × rater counts × seeds, on 2-D images and 3-D volumes. Every
method sees the same crowds in one run; the score is the Dice of its consensus against the truth.
Writes bench/consensus_accuracy/results.json (per-seed Dice, cell means, the issue's targets) and
prints the Markdown table of bench/consensus_accuracy/README.md.

    .venv/bin/python bench/consensus_accuracy/run.py                 # the full grid (a few minutes)
    .venv/bin/python bench/consensus_accuracy/run.py --seeds 2 --no-3d   # a smoke run
    .venv/bin/python bench/consensus_accuracy/run.py --table         # the table of results.json
    .venv/bin/python bench/consensus_accuracy/run.py --candidates    # also candidates.py, to results_candidates.json
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from statistics import fmean  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from crowdkit.aggregation import SegmentationEM, SegmentationRASA  # noqa: E402
from crowdseg.consensus import dice, majority_vote, staple  # noqa: E402
from crowdseg.services.consensus.handlers import StapleOptions  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.unit.consensus.crowds import GRID_KINDS, blob_truth, grid_crowd  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from candidates import band_mrf, likelihood_choice, sp_band  # noqa: E402

RATERS = (3, 5, 9, 15)
SHAPE_2D, SHAPE_3D = (128, 128), (24, 48, 48)
PEERS = ("majority_vote", "crowdkit_em", "crowdkit_rasa")
DEFAULT = "crowdseg_default"
Method = Callable[[np.ndarray], np.ndarray]


def crowdkit(aggregator: type[SegmentationEM] | type[SegmentationRASA]) -> Method:
    """Crowd-Kit's aggregator on one image; it sums over axes (1, 2), so volumes go in as (D·H, W) slabs."""

    def run(masks: np.ndarray) -> np.ndarray:
        flat = masks.reshape(len(masks), -1, masks.shape[-1])
        frame = pd.DataFrame({"task": "t", "worker": [f"w{r}" for r in range(len(masks))], "segmentation": list(flat)})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EM's log(0) on unanimous pixels
            return np.asarray(aggregator().fit_predict(frame).loc["t"]).reshape(masks.shape[1:]) > 0.5

    return run


def methods() -> dict[str, Method]:
    region = StapleOptions().region  # what the consensus service runs
    return {
        DEFAULT: lambda m: staple(m, region=region).consensus(),
        "staple_image": lambda m: staple(m, region="image").consensus(),
        "staple_union": lambda m: staple(m, region="union").consensus(),
        "majority_vote": lambda m: majority_vote(m) > 0.5,
        "crowdkit_em": crowdkit(SegmentationEM),
        "crowdkit_rasa": crowdkit(SegmentationRASA),
    }


CANDIDATES: dict[str, Method] = {
    "sp_band": sp_band,
    "band_mrf": band_mrf,
    "likelihood_choice": likelihood_choice,
}


def cell(kind: str, raters: int, shape: tuple[int, ...], seeds: int, run: dict[str, Method]) -> dict[str, Any]:
    dices: dict[str, list[float]] = {name: [] for name in run}
    seconds: dict[str, float] = dict.fromkeys(run, 0.0)
    for seed in range(seeds):
        rng = np.random.default_rng([seed, raters, GRID_KINDS.index(kind), len(shape)])
        truth = blob_truth(shape, rng)
        masks, _ = grid_crowd(kind, truth, raters, rng)
        for name, method in run.items():
            started = time.perf_counter()
            consensus = method(masks)
            seconds[name] += time.perf_counter() - started
            dices[name].append(dice(consensus, truth))
    means = {name: fmean(values) for name, values in dices.items()}
    best_peer = max(PEERS, key=lambda name: means[name])
    row = {
        "kind": kind,
        "raters": raters,
        "bad": 0 if kind.startswith("good") else raters // 3,
        "dims": len(shape),
        "shape": list(shape),
        "seeds": seeds,
        "dice": dices,
        "mean_dice": means,
        "best_peer": best_peer,
        "default_minus_best_peer": means[DEFAULT] - means[best_peer],
        "seconds": seconds,
    }
    print(
        f"{len(shape)}-D {kind:13s} {raters:2d}: "
        + " ".join(f"{name}={value:.4f}" for name, value in means.items())
        + f" | Δ best peer {row['default_minus_best_peer']:+.4f}",
        flush=True,
    )
    return row


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets: Dice ≥ best peer − 0.002 on every cell; + 0.01 on average where a third is bad."""
    third_bad = [r["default_minus_best_peer"] for r in rows if r["bad"]]
    misses = [
        {"kind": r["kind"], "raters": r["raters"], "dims": r["dims"], "delta": r["default_minus_best_peer"]}
        for r in rows
        if r["default_minus_best_peer"] < -0.002
    ]
    return {
        "cells": len(rows),
        "cells_within_0.002_of_best_peer": len(rows) - len(misses),
        "cells_below": misses,
        "mean_delta_all": fmean(r["default_minus_best_peer"] for r in rows),
        "mean_delta_third_bad": fmean(third_bad) if third_bad else None,
        "min_delta": min(r["default_minus_best_peer"] for r in rows),
    }


NAMES = {
    DEFAULT: "default (band STAPLE)",
    "staple_image": "STAPLE image",
    "staple_union": "STAPLE union",
    "majority_vote": "majority vote",
    "crowdkit_em": "Crowd-Kit EM",
    "crowdkit_rasa": "Crowd-Kit RASA",
}


def markdown_table(report: dict[str, Any]) -> str:
    """One row per cell; the best of every row in bold; the last column is default − best peer."""
    names = list(NAMES)
    lines = [
        "| dims | crowd | raters | " + " | ".join(NAMES[n] for n in names) + " | default − best peer |",
        "|---|---|---|" + "---|" * len(names) + "---|",
    ]
    for row in report["cells"]:
        means = row["mean_dice"]
        top = max(means.values())
        cells = [f"**{means[n]:.4f}**" if means[n] == top else f"{means[n]:.4f}" for n in names]
        lines.append(
            f"| {row['dims']}-D | {row['kind']} | {row['raters']} | "
            + " | ".join(cells)
            + f" | {row['default_minus_best_peer']:+.4f} |"
        )
    summary = report["targets"]
    lines.append("")
    lines.append(
        f"Cells within 0.002 of the best peer: {summary['cells_within_0.002_of_best_peer']} of {summary['cells']};"
        f" mean default − best peer: {summary['mean_delta_all']:+.4f} over all cells,"
        f" {summary['mean_delta_third_bad']:+.4f} over the cells with a third bad;"
        f" worst cell {summary['min_delta']:+.4f}."
    )
    return "\n".join(lines)


def candidate_summary(report: dict[str, Any]) -> str:
    """Per method: cells within 0.002 of the best peer, mean Δ (all cells, the cells with a third bad), worst cell."""
    lines = [
        "| method | cells within 0.002 | mean Δ best peer | mean Δ, a third bad | worst cell |",
        "|---|---|---|---|---|",
    ]
    rows = report["cells"]
    for name in rows[0]["mean_dice"]:
        deltas = [r["mean_dice"][name] - r["mean_dice"][r["best_peer"]] for r in rows]
        bad = [r["mean_dice"][name] - r["mean_dice"][r["best_peer"]] for r in rows if r["bad"]]
        within = sum(delta >= -0.002 for delta in deltas)
        lines.append(
            f"| {name} | {within} / {len(deltas)} | {fmean(deltas):+.4f} | {fmean(bad):+.4f} | {min(deltas):+.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=6, help="crowds per 2-D cell")
    parser.add_argument("--seeds-3d", type=int, default=4, help="crowds per 3-D cell")
    parser.add_argument("--no-3d", action="store_true", help="2-D cells only")
    parser.add_argument("--kinds", nargs="*", default=list(GRID_KINDS), choices=GRID_KINDS)
    parser.add_argument("--raters", nargs="*", type=int, default=list(RATERS))
    parser.add_argument("--candidates", action="store_true", help="also run candidates.py's methods")
    parser.add_argument("--out", type=Path, default=None, help="results.json, or results_candidates.json")
    parser.add_argument("--table", action="store_true", help="print the Markdown table of --out and exit")
    args = parser.parse_args()
    out = args.out or Path(__file__).with_name("results_candidates.json" if args.candidates else "results.json")
    if args.table:
        report = json.loads(out.read_text())
        print(markdown_table(report) + "\n\n" + candidate_summary(report))
        return
    run = methods() | (CANDIDATES if args.candidates else {})
    grids = [(SHAPE_2D, args.seeds)] + ([] if args.no_3d else [(SHAPE_3D, args.seeds_3d)])
    started = time.perf_counter()
    rows = [
        cell(kind, raters, shape, seeds, run)
        for shape, seeds in grids
        for kind in args.kinds
        for raters in args.raters
    ]
    report = {
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "versions": {"numpy": np.__version__},
        "default_region": StapleOptions().region,
        "seconds": time.perf_counter() - started,
        "targets": targets(rows),
        "cells": rows,
    }
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    print(markdown_table(report) + "\n\n" + candidate_summary(report))


if __name__ == "__main__":
    main()
