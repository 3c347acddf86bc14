from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from crowdseg.consensus import multilabel_staple, staple

from tests.unit.consensus.crowds import blob_truth, warped

pytestmark = pytest.mark.unit


def label_crowd(seed: int, raters: int, shape: tuple[int, int] = (80, 96)) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = blob_truth(shape, rng, 0.35).astype(np.uint8)
    truth[blob_truth(shape, rng, 0.15)] = 2
    truth[blob_truth(shape, rng, 0.05)] = 3
    maps = np.zeros((raters, *shape), np.uint8)
    for r in range(raters):
        amplitude = 2.0 if r < raters - 2 else 6.0
        for label in (1, 2, 3):
            maps[r][warped(truth == label, rng, amplitude)] = label
    return maps, truth


def sitk_multilabel(maps: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    staple_filter = sitk.MultiLabelSTAPLEImageFilter()
    labels = sitk.GetArrayFromImage(staple_filter.Execute([sitk.GetImageFromArray(m) for m in maps]))
    n = int(maps.max()) + 1
    confusion = [
        np.array(staple_filter.GetConfusionMatrix(r)).reshape(n + 1, n)[:n] for r in range(len(maps))
    ]
    return labels, confusion


@pytest.mark.parametrize("seed", range(3))
def test_matches_simpleitk(seed: int) -> None:
    maps, _ = label_crowd(seed, raters=7)
    expected, confusion = sitk_multilabel(maps)
    result = multilabel_staple(maps, max_iter=1000)
    assert np.mean(result.label_map == expected) >= 0.9999
    for r in range(len(maps)):
        np.testing.assert_allclose(result.confusion[r], confusion[r], atol=5e-3)


def test_recovers_truth_and_ranks_sloppy_raters_last() -> None:
    maps, truth = label_crowd(11, raters=9)
    result = multilabel_staple(maps)
    assert np.mean(result.consensus() == truth) > 0.97
    mean_sensitivity = result.sensitivity().mean(axis=1)
    assert set(np.argsort(mean_sensitivity)[:2]) == {7, 8}
    np.testing.assert_allclose(result.probability.sum(axis=-1), 1.0)
    np.testing.assert_allclose(result.confusion.sum(axis=1), 1.0)


def test_two_labels_agree_with_binary_staple_consensus() -> None:
    rng = np.random.default_rng(5)
    truth = blob_truth((64, 64), rng)
    masks = np.stack([warped(truth, rng, 3.0) for _ in range(5)])
    binary = staple(masks)
    multi = multilabel_staple(masks.astype(np.uint8))
    assert np.mean(multi.label_map == binary.consensus()) > 0.995


def test_unanimous_labels_come_back_exactly() -> None:
    label_map = np.array([[0, 1, 2], [2, 1, 0]])
    result = multilabel_staple(np.stack([label_map] * 3))
    np.testing.assert_array_equal(result.label_map, label_map)


def test_tie_gives_undecided_label() -> None:
    maps = np.array([[[0, 1]], [[1, 0]]])
    result = multilabel_staple(maps, undecided_label=9)
    assert result.label_map.tolist() == [[9, 9]]
    assert multilabel_staple(maps).undecided_label == 2


@pytest.mark.parametrize("bad", [np.zeros((0, 3, 3), int), np.full((2, 2, 2), -1), np.zeros((2, 2, 2)) + 0.5])
def test_rejects_invalid_input(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        multilabel_staple(bad)
