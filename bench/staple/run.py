"""STAPLE side by side: SimpleITK, Crowd-Kit SegmentationEM and crowdseg on the same crowds.

One process, one thread each (OMP/OpenBLAS/MKL pinned to 1 thread, ITK's global default
thread count set to 1). Every crowd is synthetic with a known truth (tests/unit/consensus/
crowds.py: boundary noise plus 20 % bad raters). Writes bench/staple/results.json with the
median wall time of each implementation, crowdseg's time as a multiple of one pass over the
votes (`masks.sum(axis=0, dtype=np.uint8)`, timed on the same stack in the same run, the memory
floor), crowdseg's speed-up over each peer, crowdseg's peak
memory against the input size, the agreement of the thresholded consensus with SimpleITK,
and every method's Dice against the truth.

    .venv/bin/python bench/staple/run.py            # the issue's sizes
    .venv/bin/python bench/staple/run.py --quick    # small sizes, a smoke run
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import SimpleITK as sitk  # noqa: E402
from crowdkit.aggregation import SegmentationEM  # noqa: E402
from crowdseg.consensus import dice, staple  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from tests.unit.consensus.crowds import blob_truth, boundary_crowd  # noqa: E402

FULL = [(30, (1024, 1024)), (40, (2048, 2048)), (10, (64, 512, 512))]
QUICK = [(30, (256, 256)), (40, (512, 512)), (10, (16, 128, 128))]
PEER_BUDGET_SECONDS = 20.0  # a peer is repeated only while its total stays under this
FASTEST: dict[str, float] = {}  # the best run of each implementation on the current crowd


def median_seconds(
    run: Callable[[], Any], repetitions: int, budget: float = float("inf")
) -> tuple[float, int, Any, float]:
    """Median wall time of up to ``repetitions`` runs (fewer once ``budget`` seconds are spent)."""
    times: list[float] = []
    result = None
    while len(times) < repetitions and sum(times) < budget:
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(times), result, min(times)


def median_seconds_beside_a_pass(
    run: Callable[[], Any], masks: np.ndarray, repetitions: int
) -> tuple[float, int, Any, float, float]:
    """`median_seconds` of ``run``, with one pass over the votes timed in turn with each run
    (so that load swings hit both alike); the pass's median comes last."""
    times: list[float] = []
    passes: list[float] = []
    result = None
    for _ in range(repetitions):
        started = time.perf_counter()
        masks.sum(axis=0, dtype=np.uint8)
        passes.append(time.perf_counter() - started)
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return statistics.median(times), len(times), result, min(times), statistics.median(passes)


def traced_peak(run: Callable[[], Any]) -> int:
    """Peak bytes allocated through Python and NumPy while ``run`` runs (the result included)."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_peak_growth(run: Callable[[], Any]) -> int:
    """Peak growth of the resident set while ``run`` runs (for C++ code tracemalloc cannot see)."""
    baseline, peak, done = _rss(), [0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        run()
    finally:
        done.set()
        sampler.join()
    return max(0, max(peak[0], _rss()) - baseline)


def simpleitk_staple(images: list[sitk.Image]) -> np.ndarray:
    staple_filter = sitk.STAPLEImageFilter()
    staple_filter.SetForegroundValue(1)
    staple_filter.SetNumberOfThreads(1)
    return sitk.GetArrayFromImage(staple_filter.Execute(images)) > 0.5


def crowdkit_frame(masks: np.ndarray) -> pd.DataFrame:
    """Crowd-Kit's input; it sums over axes (1, 2), so volumes go in as (D·H, W) slabs."""
    flat = masks.reshape(len(masks), -1, masks.shape[-1])
    return pd.DataFrame({"task": "t", "worker": [f"w{r}" for r in range(len(masks))], "segmentation": list(flat)})


def run_simpleitk(masks: np.ndarray) -> tuple[float, int, np.ndarray, int]:
    """(median seconds, runs, consensus, resident-set growth) of SimpleITK's STAPLEImageFilter."""
    images = [sitk.GetImageFromArray(m.astype(np.uint8)) for m in masks]
    timed: list[Any] = []
    growth = rss_peak_growth(
        lambda: timed.extend(median_seconds(lambda: simpleitk_staple(images), 3, PEER_BUDGET_SECONDS))
    )
    FASTEST["simpleitk"] = timed[3]
    return timed[0], timed[1], timed[2], growth


def run_crowdkit(masks: np.ndarray) -> tuple[float, int, np.ndarray, int]:
    """(median seconds, runs, consensus, resident-set growth) of Crowd-Kit's SegmentationEM."""
    frame = crowdkit_frame(masks)
    timed: list[Any] = []
    growth = rss_peak_growth(
        lambda: timed.extend(median_seconds(lambda: SegmentationEM().fit_predict(frame), 3, PEER_BUDGET_SECONDS))
    )
    FASTEST["crowdkit_segmentation_em"] = timed[3]
    return timed[0], timed[1], np.asarray(timed[2].loc["t"]).reshape(masks.shape[1:]), growth


def bench_crowd(
    raters: int, shape: tuple[int, ...], repetitions: int, seed: int, crowdkit_max_voxels: float
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    truth = blob_truth(shape, rng)
    masks, _ = boundary_crowd(truth, raters, rng, bad_share=0.2)
    print(f"{raters} raters × {'×'.join(map(str, shape))}: crowd ready", flush=True)

    FASTEST.clear()
    ours, our_runs, result, FASTEST["crowdseg"], vote_pass = median_seconds_beside_a_pass(
        lambda: staple(masks), masks, repetitions
    )
    ours_mask = result.consensus()
    our_peak = traced_peak(lambda: staple(masks))
    union, _, union_result, FASTEST["crowdseg_union"] = median_seconds(
        lambda: staple(masks, region="union"), repetitions
    )
    band, _, band_result, FASTEST["crowdseg_band"] = median_seconds(lambda: staple(masks, region="band"), repetitions)

    itk, itk_runs, itk_mask, itk_growth = run_simpleitk(masks)
    skip_kit = truth.size > crowdkit_max_voxels
    kit, kit_runs, kit_mask, kit_growth = (float("nan"), 0, ours_mask, 0) if skip_kit else run_crowdkit(masks)

    row = {
        "raters": raters,
        "shape": list(shape),
        "input_bytes": int(masks.nbytes),
        "iterations": result.iterations,
        "seconds": {
            "crowdseg": ours,
            "crowdseg_union": union,
            "crowdseg_band": band,
            "simpleitk": itk,
            "crowdkit_segmentation_em": None if skip_kit else kit,
            "vote_pass": vote_pass,
        },
        "over_vote_pass": {
            "crowdseg": ours / vote_pass,
            "crowdseg_union": union / vote_pass,
            "crowdseg_band": band / vote_pass,
        },
        "fastest_seconds": dict(FASTEST),
        "runs": {"crowdseg": our_runs, "simpleitk": itk_runs, "crowdkit_segmentation_em": kit_runs},
        "speedup": {"vs_simpleitk": itk / ours, "vs_crowdkit_segmentation_em": None if skip_kit else kit / ours},
        "speedup_best_runs": {"vs_simpleitk": FASTEST["simpleitk"] / FASTEST["crowdseg"]},
        "peak_memory_bytes": {
            "crowdseg_traced": our_peak,
            "crowdkit_rss_growth": None if skip_kit else kit_growth,
            "simpleitk_rss_growth": itk_growth,
        },
        "crowdseg_peak_over_input": our_peak / masks.nbytes,
        "agreement_with_simpleitk": float(np.mean(ours_mask == itk_mask)),
        "dice_vs_truth": {
            "crowdseg": dice(ours_mask, truth),
            "crowdseg_union": dice(union_result.consensus(), truth),
            "crowdseg_band": dice(band_result.consensus(), truth),
            "simpleitk": dice(itk_mask, truth),
            "crowdkit_segmentation_em": None if skip_kit else dice(kit_mask, truth),
        },
    }
    print(json.dumps(row), flush=True)
    return row


def markdown_table(report: dict[str, Any]) -> str:
    """The README's table: one row per crowd."""
    lines = [
        "| crowd | crowdseg | one pass over the votes | crowdseg / pass"
        " | SimpleITK | Crowd-Kit EM | × SimpleITK (medians / best runs) | × Crowd-Kit | crowdseg peak / input"
        " | agreement with SimpleITK | Dice crowdseg / SimpleITK / Crowd-Kit | crowdseg union: time, Dice |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["crowds"]:
        seconds, runs, dices = row["seconds"], row["runs"], row["dice_vs_truth"]
        crowd = f"{row['raters']} × {'×'.join(map(str, row['shape']))}"
        kit_seconds, kit_speedup = seconds["crowdkit_segmentation_em"], row["speedup"]["vs_crowdkit_segmentation_em"]
        kit = "not run" if kit_seconds is None else f"{kit_seconds:.2f} s (n={runs['crowdkit_segmentation_em']})"
        best = row.get("speedup_best_runs", row["speedup"])["vs_simpleitk"]
        union_seconds, union_dice = seconds.get("crowdseg_union"), dices.get("crowdseg_union")
        union_cell = "–" if union_seconds is None else f"{union_seconds * 1e3:.1f} ms, {union_dice:.4f}"
        vote_pass, over_pass = seconds.get("vote_pass"), row.get("over_vote_pass", {}).get("crowdseg")
        pass_cells = "– | –" if vote_pass is None else f"{vote_pass * 1e3:.1f} ms | {over_pass:.1f}×"
        kit_ratio = "–" if kit_speedup is None else f"{kit_speedup:.0f}×"
        kit_dice = "–" if dices["crowdkit_segmentation_em"] is None else f"{dices['crowdkit_segmentation_em']:.4f}"
        lines.append(
            f"| {crowd} | {seconds['crowdseg'] * 1e3:.1f} ms (n={runs['crowdseg']}) | {pass_cells}"
            f" | {seconds['simpleitk']:.2f} s (n={runs['simpleitk']})"
            f" | {kit} | {row['speedup']['vs_simpleitk']:.0f}× / {best:.0f}× | {kit_ratio}"
            f" | {row['crowdseg_peak_over_input']:.2f} | {row['agreement_with_simpleitk'] * 100:.4f} %"
            f" | {dices['crowdseg']:.4f} / {dices['simpleitk']:.4f} / {kit_dice} | {union_cell} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small crowds, for a smoke run")
    parser.add_argument("--repetitions", type=int, default=11, help="crowdseg runs per crowd (median)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("results.json"))
    parser.add_argument(
        "--crowdkit-max-voxels",
        type=float,
        default=float("inf"),
        help="leave Crowd-Kit out of larger crowds (it needs ~8 float64 copies of the stack and minutes)",
    )
    parser.add_argument("--table", action="store_true", help="print the Markdown table of --out and exit")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(args.out.read_text())))
        return
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    load_at_start = os.getloadavg()
    rows = [
        bench_crowd(raters, shape, args.repetitions, seed, args.crowdkit_max_voxels)
        for seed, (raters, shape) in enumerate(QUICK if args.quick else FULL)
    ]
    report = {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "load_average_at_start": load_at_start,  # read before the runs, not after them
        },
        "versions": {"numpy": np.__version__, "simpleitk": sitk.Version.VersionString()},
        "threads": 1,
        "quick": args.quick,
        "crowdkit_max_voxels": args.crowdkit_max_voxels,
        "crowds": rows,
    }
    report["machine"]["load_average_at_end"] = os.getloadavg()
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    print(markdown_table(report))


if __name__ == "__main__":
    main()
