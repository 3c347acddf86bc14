"""Pure parts of the export bundle."""

from __future__ import annotations

import numpy as np
import pytest
from crowdseg.domain import Image
from crowdseg.services.export.bundle import image_folders, rle

pytestmark = pytest.mark.unit


def image(image_id: str, name: str) -> Image:
    return Image(
        id=image_id, task_id="t", name=name, width=1, height=1, source_format="png", original_key="o",
        display_key="d", display_media_type="image/png", thumbnail_key="t", thumbnail_media_type="image/png",
    )


def test_images_whose_names_sanitise_alike_get_distinct_folders() -> None:
    """Regression: `a/b.png` and `a_b.png` (or one name uploaded twice) shared one export folder, and the
    second image's submissions and consensus overwrote the first's entries in the ZIP."""
    folders = image_folders([image("1", "a/b.png"), image("2", "a_b.png"), image("3", "a/b.png"), image("4", "c.png")])
    assert len(set(folders.values())) == 4
    assert folders["1"] == "a_b.png" and folders["4"] == "c.png"


def test_rle_is_column_major_and_starts_with_a_background_run() -> None:
    mask = np.array([[1, 0], [1, 1]], dtype=bool)
    assert rle(mask) == {"counts": [0, 2, 1, 1], "size": [2, 2]}
