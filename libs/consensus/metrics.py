"""Agreement metrics for qualification tests and evaluation.

Dice, Jaccard, sensitivity/specificity of binary masks; modified Hausdorff distance
(Dubuisson M.-P., Jain A.K. (1994), "A modified Hausdorff distance for object matching",
Proc. 12th ICPR, 566-568) and the 95th-percentile Hausdorff distance between boundaries;
precision/recall/RMSE of point sets under one-to-one matching within a radius.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.ndimage import binary_erosion
from scipy.optimize import linear_sum_assignment
from scipy.spatial import cKDTree


def _binary_pair(a: NDArray[Any], b: NDArray[Any]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    first, second = np.asarray(a) != 0, np.asarray(b) != 0
    if first.shape != second.shape:
        raise ValueError(f"masks differ in shape: {first.shape} vs {second.shape}")
    return first, second


def dice(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Dice coefficient 2|A and B| / (|A| + |B|); 1.0 when both masks are empty."""
    first, second = _binary_pair(a, b)
    total = int(first.sum()) + int(second.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(first & second)) / total


def jaccard(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Jaccard index |A and B| / |A or B|; 1.0 when both masks are empty."""
    first, second = _binary_pair(a, b)
    union = int(np.count_nonzero(first | second))
    return 1.0 if union == 0 else int(np.count_nonzero(first & second)) / union


def sensitivity_specificity(pred: NDArray[Any], truth: NDArray[Any]) -> tuple[float, float]:
    """(TP / (TP + FN), TN / (TN + FP)) of ``pred`` against ``truth``; 1.0 for an empty class."""
    predicted, actual = _binary_pair(pred, truth)
    tp = int(np.count_nonzero(predicted & actual))
    tn = int(np.count_nonzero(~predicted & ~actual))
    positives, negatives = int(actual.sum()), actual.size - int(actual.sum())
    return (tp / positives if positives else 1.0, tn / negatives if negatives else 1.0)


def boundary_points(mask: NDArray[Any]) -> NDArray[np.float64]:
    """Coordinates (in array index order) of the mask's boundary pixels: foreground with a
    background 1-neighbour (pixels on the image border count as boundary)."""
    region = np.asarray(mask) != 0
    interior = binary_erosion(region, border_value=0)
    return np.argwhere(region & ~interior).astype(np.float64)


def _as_point_set(shape: NDArray[Any]) -> NDArray[np.float64]:
    """Point sets are numeric (n, 2) or (n, 3) arrays; anything boolean or otherwise shaped is a mask.

    Masks become their boundary pixels in array index order; callers mixing a mask with a
    point set must give the points in the same (row, col) order.
    """
    array = np.asarray(shape)
    if array.dtype != np.bool_ and array.ndim == 2 and array.shape[1] in (2, 3):
        return array.astype(np.float64)
    return boundary_points(array)


def _directed_distances(source: NDArray[np.float64], target: NDArray[np.float64]) -> NDArray[np.float64]:
    distances, _ = cKDTree(target).query(source)
    return np.asarray(distances, np.float64)


def _symmetric_distances(a: NDArray[Any], b: NDArray[Any]) -> tuple[NDArray[np.float64], NDArray[np.float64]] | float:
    """Both directed nearest-neighbour distance sets, or 0.0 / inf when a set is empty."""
    first, second = _as_point_set(a), _as_point_set(b)
    if len(first) == 0 and len(second) == 0:
        return 0.0
    if len(first) == 0 or len(second) == 0:
        return float("inf")
    return _directed_distances(first, second), _directed_distances(second, first)


def modified_hausdorff(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Modified Hausdorff distance max(mean d(A, B), mean d(B, A)) (Dubuisson & Jain 1994).

    ``a``/``b`` are point sets (n, 2|3) or masks (compared by their boundary pixels).
    0.0 when both are empty, inf when only one is.
    """
    distances = _symmetric_distances(a, b)
    if isinstance(distances, float):
        return distances
    return float(max(distances[0].mean(), distances[1].mean()))


def hausdorff95(a: NDArray[Any], b: NDArray[Any]) -> float:
    """95th-percentile Hausdorff distance: max of the directed 95th percentiles (as in MedPy)."""
    distances = _symmetric_distances(a, b)
    if isinstance(distances, float):
        return distances
    return float(max(np.percentile(distances[0], 95), np.percentile(distances[1], 95)))


def match_points(
    pred: NDArray[Any], truth: NDArray[Any], radius: float
) -> tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.float64]]:
    """One-to-one matching minimising total distance, keeping pairs closer than ``radius``.

    Returns (pred indices, truth indices, distances) of the matched pairs.
    """
    predicted = np.asarray(pred, np.float64).reshape(-1, 2)
    actual = np.asarray(truth, np.float64).reshape(-1, 2)
    empty = np.empty(0, np.intp)
    if len(predicted) == 0 or len(actual) == 0:
        return empty, empty, np.empty(0)
    distance = np.linalg.norm(predicted[:, None, :] - actual[None, :, :], axis=-1)
    # Pairs out of range cost more than any in-range set of pairs could save.
    out_of_range = distance > radius
    cost = np.where(out_of_range, radius * (len(predicted) + len(actual) + 1), distance)
    rows, cols = linear_sum_assignment(cost)
    keep = ~out_of_range[rows, cols]
    return rows[keep], cols[keep], distance[rows[keep], cols[keep]]


def point_precision_recall(pred: NDArray[Any], truth: NDArray[Any], radius: float) -> tuple[float, float, float]:
    """(precision, recall, RMSE of matched distances) of a point set against a reference.

    Empty prediction -> precision 1.0; empty reference -> recall 1.0; no match -> RMSE nan.
    """
    rows, _, distances = match_points(pred, truth, radius)
    n_pred, n_truth = len(np.asarray(pred).reshape(-1, 2)), len(np.asarray(truth).reshape(-1, 2))
    precision = len(rows) / n_pred if n_pred else 1.0
    recall = len(rows) / n_truth if n_truth else 1.0
    rmse = float(np.sqrt(np.mean(distances**2))) if len(distances) else float("nan")
    return precision, recall, rmse
