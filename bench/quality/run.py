"""Quality control on synthetic crowds with a known truth (issue 10, "What shows it works" (1) and (3)).

A crowd is a pool of raters of whom 20 % or 30 % are bad — sloppy (offset, wobbly, outlining
something that is not there), shifted (the outline 5–8 px off) or spammers (random blobs as large
as the object), in turn — and the rest good, each with a skill of their own (boundary noise of
1–4 px: a habit of tracing outside or inside the edge and a wobbly hand). Each image of the crowd
is drawn by a random subset of the pool (``--per-image`` raters), as `next` would hand it out.
The generators are tests/unit/consensus/crowds.py's (as in bench/consensus_accuracy).

(1) Consensus Dice against the truth, on the same crowds: the service's STAPLE (``StapleOptions``)
    over every rater, the same after screening, Crowd-Kit's ``SegmentationEM``, majority vote, and
    the service's STAPLE over the good raters only (what screening should bring the consensus back
    to). Screening runs the consensus service's own path: every rater's per-image quality by
    ``crowdseg.consensus.quality.mask_qualities`` (what ``_mask_consensus`` stores), its task-wide
    mean (``Tally.quality``), the raters left out by ``crowdseg.consensus.quality.screened_out``
    with the service's ``FLAG_RULE``, the submissions fused by the service's ``fused_submissions``.
(3) Spearman's rank correlation (scipy) of every rater's task-wide ``quality`` with their true Dice
    (the mean over their images of the Dice of their mask against the truth); target ≥ 0.9.

    .venv/bin/python bench/quality/run.py              # 2 bad shares × 5 seeds (a few minutes)
    .venv/bin/python bench/quality/run.py --seeds 1    # a smoke run
    .venv/bin/python bench/quality/run.py --table      # the README table of results.json
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from statistics import fmean  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from crowdkit.aggregation import SegmentationEM  # noqa: E402
from crowdseg.consensus import dice, majority_vote, staple  # noqa: E402
from crowdseg.consensus.quality import majority_of_others, mask_qualities, screened_out, soft_dice  # noqa: E402
from crowdseg.domain import Submission  # noqa: E402
from crowdseg.services.consensus.handlers import FLAG_RULE, StapleOptions, fused_submissions  # noqa: E402
from numpy.typing import NDArray  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.unit.consensus.crowds import bad_grid_rater, bad_rater, blob_truth, good_rater, signed_distance  # noqa: E402

BAD_KINDS = ("sloppy", "shifted", "spammer")
SHAPE = (128, 128)
METHODS = ("crowdseg", "crowdseg_screened", "crowdkit_em", "majority_vote", "crowdseg_good_only")
NAMES = {
    "crowdseg": "crowdseg STAPLE, every rater",
    "crowdseg_screened": "crowdseg STAPLE, screened",
    "crowdkit_em": "Crowd-Kit SegmentationEM",
    "majority_vote": "majority vote",
    "crowdseg_good_only": "crowdseg STAPLE, good raters only",
}
Masks = NDArray[np.bool_]


def rater_kinds(pool: int, bad_share: float) -> list[str]:
    bad = round(pool * bad_share)
    return ["good"] * (pool - bad) + [BAD_KINDS[b % len(BAD_KINDS)] for b in range(bad)]


def draw(kind: str, skill: float, truth: Masks, rng: np.random.Generator) -> Masks:
    """One rater's mask of ``truth``: a good rater at their own boundary noise, or a bad one."""
    distance = signed_distance(truth)
    if kind == "good":
        return good_rater(truth, distance, rng, skill)
    if kind == "sloppy":
        return bad_rater(truth, rng, 2, 2.0)
    return bad_grid_rater(kind, truth, distance, rng)


def crowdkit_em(masks: Masks) -> Masks:
    frame = pd.DataFrame({"task": "t", "worker": [f"w{r}" for r in range(len(masks))], "segmentation": list(masks)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # EM's log(0) on unanimous pixels
        return np.asarray(SegmentationEM().fit_predict(frame).loc["t"]) > 0.5


def service_staple(masks: Masks) -> Masks:
    options = StapleOptions()
    return staple(masks, max_iter=options.max_iter, tol=options.tol, region=options.region).consensus()


def make_crowd(
    seed: int, bad_share: float, pool: int, images: int, per_image: int
) -> tuple[list[str], list[Masks], list[list[int]], list[Masks]]:
    """(kinds, truths, the raters of each image, their masks)."""
    rng = np.random.default_rng([seed, round(bad_share * 100), pool, images, per_image])
    kinds = rater_kinds(pool, bad_share)
    skills = rng.uniform(1.0, 4.0, pool)
    truths, raters, stacks = [], [], []
    for _ in range(images):
        truth = blob_truth(SHAPE, rng)
        chosen = sorted(int(r) for r in rng.choice(pool, per_image, replace=False))
        truths.append(truth)
        raters.append(chosen)
        stacks.append(np.stack([draw(kinds[r], float(skills[r]), truth, rng) for r in chosen]))
    return kinds, truths, raters, stacks


def plain_majority_qualities(masks: Masks) -> list[float | None]:
    """Quality as scoring 1 had it (before this benchmark): Dice against the others' plain majority."""
    return [soft_dice(masks[r], majority_of_others(masks, r)) for r in range(len(masks))]


def task_quality(
    raters: list[list[int]],
    stacks: list[Masks],
    pool: int,
    excluded: frozenset[str] = frozenset(),
    scorer: Callable[[Masks], list[float | None]] = mask_qualities,
) -> dict[str, tuple[float | None, int]]:
    """Every rater's task-wide quality and its image count, as the service's tallies keep them. With
    raters ``excluded``, as the service scores a screened consensus: the fused raters among themselves
    (``_mask_consensus`` on the fused submissions), the left-out ones among all (``_with_screened_out``)."""
    per_rater: dict[int, list[float]] = {r: [] for r in range(pool)}
    for image, (chosen, masks) in enumerate(zip(raters, stacks, strict=True)):
        kept = fused_flags(image, chosen, excluded)
        among_kept = iter(scorer(masks[kept]))
        for r, q_all, is_kept in zip(chosen, scorer(masks), kept, strict=True):
            q = next(among_kept) if is_kept else q_all
            if q is not None:
                per_rater[r].append(q)
    return {f"r{r}": ((fmean(qs) if qs else None), len(qs)) for r, qs in per_rater.items()}


def fused_flags(image: int, chosen: list[int], excluded: frozenset[str]) -> list[bool]:
    """Which of the image's raters the service fuses (``fused_submissions``)."""
    submissions = [
        Submission(id=f"s{image}-{r}", task_id="t", image_id=f"i{image}", user_id=f"r{r}", shapes=[]) for r in chosen
    ]
    kept = {s.id for s in fused_submissions(submissions, excluded)}
    return [s.id in kept for s in submissions]


def rho(rows: list[dict[str, Any]], key: str) -> float:
    """Spearman's rank correlation of ``key`` with the true Dice over ``rows``."""
    return float(spearmanr([x[key] for x in rows], [x["true_dice"] for x in rows]).statistic)


def run_crowd(seed: int, bad_share: float, per_image: int, args: argparse.Namespace) -> dict[str, Any]:
    kinds, truths, raters, stacks = make_crowd(seed, bad_share, args.pool, args.images, per_image)
    quality = task_quality(raters, stacks, args.pool)
    plain = task_quality(raters, stacks, args.pool, scorer=plain_majority_qualities)
    excluded = frozenset(screened_out(quality, args.min_quality, FLAG_RULE))
    screened_quality = task_quality(raters, stacks, args.pool, excluded)
    good = {f"r{r}" for r, kind in enumerate(kinds) if kind == "good"}
    run: dict[str, Callable[[int, list[int], Masks], Masks]] = {
        "crowdseg": lambda i, c, m: service_staple(m),
        "crowdseg_screened": lambda i, c, m: service_staple(m[fused_flags(i, c, excluded)]),
        "crowdkit_em": lambda i, c, m: crowdkit_em(m),
        "majority_vote": lambda i, c, m: majority_vote(m) > 0.5,
        "crowdseg_good_only": lambda i, c, m: service_staple(m[[f"r{r}" in good for r in c]]),
    }
    dices = {
        name: [dice(method(i, c, m), t) for i, (c, m, t) in enumerate(zip(raters, stacks, truths, strict=True))]
        for name, method in run.items()
    }
    true_dice: dict[int, list[float]] = {r: [] for r in range(args.pool)}
    for chosen, masks, truth in zip(raters, stacks, truths, strict=True):
        for r, mask in zip(chosen, masks, strict=True):
            true_dice[r].append(dice(mask, truth))
    rows = [
        {
            "rater": f"r{r}",
            "kind": kinds[r],
            "quality": quality[f"r{r}"][0],
            "quality_plain_majority": plain[f"r{r}"][0],
            "quality_screened": screened_quality[f"r{r}"][0],
            "images": quality[f"r{r}"][1],
            "true_dice": fmean(true_dice[r]),
            "excluded": f"r{r}" in excluded,
        }
        for r in range(args.pool)
        if true_dice[r]
    ]
    good_rows = [x for x in rows if x["kind"] == "good"]
    bad = {f"r{r}" for r, kind in enumerate(kinds) if kind != "good"}
    result = {
        "seed": seed,
        "bad_share": bad_share,
        "per_image": per_image,
        "bad": len(bad),
        "mean_dice": {name: fmean(values) for name, values in dices.items()},
        "dice": dices,
        "excluded": sorted(excluded),
        "bad_excluded": len(excluded & bad),
        "good_excluded": len(excluded - bad),
        "spearman": rho(rows, "quality"),
        "spearman_plain_majority": rho(rows, "quality_plain_majority"),
        "spearman_plain_majority_good_only": rho(good_rows, "quality_plain_majority"),
        "spearman_good_only": rho(good_rows, "quality"),
        "spearman_screened": rho(rows, "quality_screened"),
        "spearman_screened_good_only": rho(good_rows, "quality_screened"),
        "raters": rows,
    }
    print(
        f"bad {bad_share:.0%} × {per_image} seed {seed}: "
        + " ".join(f"{name}={value:.4f}" for name, value in result["mean_dice"].items())
        + f" | left out {len(excluded & bad)}/{len(bad)} bad, {len(excluded - bad)} good"
        + f" | ρ {result['spearman']:.3f} (good {result['spearman_good_only']:.3f})"
        + f", screened {result['spearman_screened']:.3f} (good {result['spearman_screened_good_only']:.3f})",
        flush=True,
    )
    return result


SPEARMAN = (
    "spearman",
    "spearman_good_only",
    "spearman_screened",
    "spearman_screened_good_only",
    "spearman_plain_majority",
    "spearman_plain_majority_good_only",
)


def summary(crowds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for share, per_image in sorted({(c["bad_share"], c["per_image"]) for c in crowds}):
        these = [c for c in crowds if (c["bad_share"], c["per_image"]) == (share, per_image)]
        rows.append(
            {
                "bad_share": share,
                "per_image": per_image,
                "crowds": len(these),
                "mean_dice": {name: fmean(c["mean_dice"][name] for c in these) for name in METHODS},
                "bad_excluded": sum(c["bad_excluded"] for c in these),
                "bad": sum(c["bad"] for c in these),
                "good_excluded": sum(c["good_excluded"] for c in these),
                **{f"{key}_mean": fmean(c[key] for c in these) for key in SPEARMAN},
                **{f"{key}_min": min(c[key] for c in these) for key in SPEARMAN},
            }
        )
    return rows


def table(results: dict[str, Any]) -> str:
    """Two Markdown tables: consensus Dice by method, and quality's rank correlation with true Dice."""
    dice_rows = [
        "| bad raters | raters per image | crowds | "
        + " | ".join(NAMES[m] for m in METHODS)
        + " | bad left out | good left out |",
        "|---|---:|---:|" + "---:|" * len(METHODS) + "---:|---:|",
    ]
    rank_rows = [
        "| bad raters | raters per image | `quality` (weighted vote) mean / min | good raters only"
        " | after screening mean / min | after screening, good raters | before: plain majority mean / min"
        " | before, good raters |",
        "|---|---:|---|---:|---|---:|---|---:|",
    ]

    def pair(row: dict[str, Any], key: str) -> str:
        return f"{row[key + '_mean']:.3f} / {row[key + '_min']:.3f}"

    for row in results["summary"]:
        head = f"| {row['bad_share']:.0%} | {row['per_image']} |"
        dice_rows.append(
            f"{head} {row['crowds']} | "
            + " | ".join(f"{row['mean_dice'][m]:.4f}" for m in METHODS)
            + f" | {row['bad_excluded']}/{row['bad']} | {row['good_excluded']} |"
        )
        rank_rows.append(
            f"{head} {pair(row, 'spearman')} | {row['spearman_good_only_mean']:.3f} | "
            f"{pair(row, 'spearman_screened')} | {row['spearman_screened_good_only_mean']:.3f} | "
            f"{pair(row, 'spearman_plain_majority')} | {row['spearman_plain_majority_good_only_mean']:.3f} |"
        )
    return "\n".join(dice_rows) + "\n\n" + "\n".join(rank_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bad-shares", type=float, nargs="+", default=[0.2, 0.3])
    parser.add_argument("--pool", type=int, default=20, help="raters in the crowd")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--per-image", type=int, nargs="+", default=[5, 10], help="raters per image (replicates)")
    parser.add_argument("--min-quality", type=float, default=0.8, help="the task's screening.min_quality")
    parser.add_argument("--output", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument("--table", action="store_true", help="print the table of --output and stop")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.output.read_text())))
        return
    crowds = [
        run_crowd(seed, share, n, args)
        for n in args.per_image
        for share in args.bad_shares
        for seed in range(args.seeds)
    ]
    results = {
        "settings": {
            "pool": args.pool,
            "images": args.images,
            "per_image": args.per_image,
            "shape": list(SHAPE),
            "min_quality": args.min_quality,
            "flag_min_images": FLAG_RULE.min_images,
            "staple_region": StapleOptions().region,
            "bad_kinds": list(BAD_KINDS),
            "good_skill_px": [1.0, 4.0],
        },
        "machine": {"python": platform.python_version(), "numpy": np.__version__},
        "summary": summary(crowds),
        "crowds": crowds,
    }
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    print(table(results))


if __name__ == "__main__":
    main()
