"""Adaptive replicates against fixed ``replicates = 10`` on synthetic crowds with known truth (issue 10,
"What shows it works" (2)).

A pool of annotators, each of one kind for every image: careful raters (tight symmetric size noise and a
wobbly hand, ``sized_rater``) and 25 % bad raters (``bad_grid_rater``: spammers drawing random blobs,
outlines shifted 5-8 pixels, and sloppy ones: ``bad_rater`` mode 2, offset, three times as wobbly and
outlining something that is not there), from tests/unit/consensus/crowds.py. Every image gets up to 10
annotators of the pool in a random order, as the stream would bring them. Two crowds: ``uniform``, every
image as hard as the next (the careful raters' noise ``TIGHT``), and ``mixed``, images of three
difficulties (the careful raters' size noise and wobble: 50 % clear 0.5/0.5 px, 30 % ``TIGHT``,
20 % ``LOOSE``), as real image sets are. Fixed: the consensus of all
10. Adaptive: after each submission from ``min_replicates`` on, the consensus service's certainty rule
(crowdseg.consensus.certainty: the median leave-one-out agreement, ``mask_qualities``) decides whether
the image retires; its consensus is then that of the submissions so far. Consensus: the service's STAPLE
(``StapleOptions``). Score: Dice of the consensus against the truth. Writes
bench/quality/results_adaptive.json.

    .venv/bin/python bench/quality/adaptive.py              # 120 images (about a minute)
    .venv/bin/python bench/quality/adaptive.py --images 30  # a smoke run
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from statistics import fmean  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from crowdseg.consensus import agreement_certainty, dice, retires, staple  # noqa: E402
from crowdseg.consensus.quality import mask_qualities  # noqa: E402
from crowdseg.services.consensus.handlers import StapleOptions  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.unit.consensus.crowds import (  # noqa: E402
    LOOSE,
    TIGHT,
    bad_grid_rater,
    bad_rater,
    blob_truth,
    signed_distance,
    sized_rater,
)

OUT = Path(__file__).resolve().parent / "results_adaptive.json"
SHAPE = (96, 96)
POOL = 40
BAD_SHARE = 0.25
BAD_KINDS = ("spammer", "shifted", "sloppy")
FIXED = 10
MIN_REPLICATES = (2, 3, 4)
CONFIDENCES = (0.85, 0.90, 0.92, 0.94, 0.95, 0.96, 0.965, 0.97, 0.975, 0.98)
DIFFICULTIES = {
    "uniform": ((TIGHT, 1.0),),
    "mixed": (((0.5, 0.5), 0.5), (TIGHT, 0.3), (LOOSE, 0.2)),
}


def pool_kinds(rng: np.random.Generator) -> list[str]:
    bad = round(POOL * BAD_SHARE)
    kinds = ["careful"] * (POOL - bad) + [BAD_KINDS[b % len(BAD_KINDS)] for b in range(bad)]
    return [kinds[i] for i in rng.permutation(POOL)]


def draw(
    kind: str, truth: np.ndarray, distance: np.ndarray, rng: np.random.Generator, noise: tuple[float, float]
) -> np.ndarray:
    if kind == "careful":
        return sized_rater(distance, rng, *noise)
    if kind == "sloppy":
        return bad_rater(truth, rng, 2, TIGHT[1])
    return bad_grid_rater(kind, truth, distance, rng)


def consensus_dice(masks: np.ndarray, truth: np.ndarray) -> float:
    options = StapleOptions()
    result = staple(masks, max_iter=options.max_iter, tol=options.tol, region=options.region)
    return dice(result.consensus(), truth)


def crowds(images: int, seed: int, difficulty: str) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Per image: (truth, the 10 masks in arrival order, their annotators' kinds)."""
    rng = np.random.default_rng(seed)
    kinds = pool_kinds(rng)
    levels = DIFFICULTIES[difficulty]
    made = []
    for _ in range(images):
        truth = blob_truth(SHAPE, rng)
        distance = signed_distance(truth)
        noise = levels[rng.choice(len(levels), p=[share for _, share in levels])][0]
        order = rng.permutation(POOL)[:FIXED]
        masks = np.stack([draw(kinds[a], truth, distance, rng, noise) for a in order])
        made.append((truth, masks, [kinds[a] for a in order]))
    return made


def stopping_points(masks: np.ndarray, min_replicates: int, confidence: float) -> int:
    """How many submissions the image takes before it retires (at most FIXED)."""
    for k in range(min_replicates, FIXED + 1):
        certainty = agreement_certainty(mask_qualities(masks[:k]))
        if retires(certainty, k, min_replicates=min_replicates, confidence=confidence):
            return k
    return FIXED


def run(images: int, seed: int, difficulty: str) -> dict[str, Any]:
    made = crowds(images, seed, difficulty)
    fixed = [[consensus_dice(masks[:k], truth) for truth, masks, _ in made] for k in range(1, FIXED + 1)]
    fixed_mean = fmean(fixed[FIXED - 1])
    settings = []
    for min_replicates in MIN_REPLICATES:
        for confidence in CONFIDENCES:
            spent, dices = [], []
            for index, (_, masks, _) in enumerate(made):
                k = stopping_points(masks, min_replicates, confidence)
                spent.append(k)
                dices.append(fixed[k - 1][index])
            settings.append(
                {
                    "min_replicates": min_replicates,
                    "confidence": confidence,
                    "annotations": sum(spent),
                    "saving": 1 - sum(spent) / (FIXED * images),
                    "mean_dice": fmean(dices),
                    "dice_vs_fixed": fmean(dices) - fixed_mean,
                    "retired_early": sum(k < FIXED for k in spent) / images,
                }
            )
    best = _cheapest(settings, fixed_mean)
    within = {str(tol): _cheapest(settings, fixed_mean - tol) for tol in (0.001, 0.005, 0.01)}
    return {
        "difficulty": difficulty,
        "images": images,
        "seed": seed,
        "shape": list(SHAPE),
        "pool": POOL,
        "bad_share": BAD_SHARE,
        "bad_kinds": list(BAD_KINDS),
        "fixed_replicates": FIXED,
        "fixed": {"annotations": FIXED * images, "mean_dice": fixed_mean},
        "fixed_k_mean_dice": {str(k + 1): fmean(values) for k, values in enumerate(fixed)},
        "settings": settings,
        "best_at_same_dice": best,
        "best_within_dice": within,
        "target_saving": 0.30,
        "target_met": best is not None and best["saving"] >= 0.30,
    }


def _cheapest(settings: list[dict[str, Any]], floor: float) -> dict[str, Any] | None:
    reaching = [s for s in settings if s["mean_dice"] >= floor]
    return max(reaching, key=lambda s: s["saving"]) if reaching else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()
    results = {name: run(args.images, args.seed, name) for name in DIFFICULTIES}
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    for name, result in results.items():
        fixed = result["fixed"]
        print(f"{name}: fixed 10: {fixed['annotations']} annotations, mean Dice {fixed['mean_dice']:.4f}")
        for s in result["settings"]:
            print(
                f"  min {s['min_replicates']} conf {s['confidence']:.3f}: {s['annotations']} annotations"
                f" ({s['saving']:.0%} fewer), mean Dice {s['mean_dice']:.4f} ({s['dice_vs_fixed']:+.4f})"
            )
        print("  fixed k:", {k: round(v, 4) for k, v in result["fixed_k_mean_dice"].items()})
        print("  best at the same mean Dice:", result["best_at_same_dice"])
        print("  best within:", result["best_within_dice"])


if __name__ == "__main__":
    main()
