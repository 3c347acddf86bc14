"""Hypothesis fuzzing of the upload readers (issue 9): random and mutated ZIP, PNG, TIFF, DICOM and
NIfTI bytes. `read_zip` either reads or raises `ArchiveRejected`, `decode_image` either decodes or raises
`ImageRejected` — never another exception (which the API would answer with a 500) — and memory stays
bounded by the limits. Examples are bounded so the suite stays quick."""

from __future__ import annotations

import resource
from collections.abc import Callable

import pytest
from crowdseg.services.ingest.archives import ArchiveLimits, ArchiveRejected, read_zip
from crowdseg.services.ingest.imaging import DecodedImage, ImageLimits, ImageRejected, decode_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzing import archive_seeds, image_seeds, mutated

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("ignore::UserWarning")]  # Pillow on bad TIFF tags

IMAGE_LIMITS = ImageLimits(max_bytes=4 * 2**20, max_pixels=4_000_000, max_frames=16)
ARCHIVE_LIMITS = ArchiveLimits(max_entries=64, max_total_bytes=32 * 2**20, max_entry_bytes=8 * 2**20)
MEMORY_BUDGET = 300 * 2**20  # growth of the peak resident size over a whole run
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def within_memory(run: Callable[[], None]) -> None:
    before = peak_rss()
    run()
    assert peak_rss() - before < MEMORY_BUDGET


def decodes_or_rejects(data: bytes) -> None:
    try:
        decoded = decode_image("fuzzed", data, IMAGE_LIMITS)
    except ImageRejected as exc:
        assert exc.reason
        return
    assert isinstance(decoded, DecodedImage)
    assert decoded.width * decoded.height <= IMAGE_LIMITS.max_pixels


def test_mutated_and_random_images_decode_or_are_rejected() -> None:
    """issue 9 (fuzzing): no image bytes make decode_image raise anything but ImageRejected."""
    seeds = image_seeds()

    @FUZZ
    @given(st.one_of(mutated(seeds), st.binary(max_size=4096)))
    def check(data: bytes) -> None:
        decodes_or_rejects(data)

    within_memory(check)


def test_mutated_and_random_archives_read_or_are_rejected() -> None:
    """issue 9 (fuzzing): no archive bytes make read_zip raise anything but ArchiveRejected, what it
    returns respects the limits, and its entries in turn decode or are rejected."""
    seeds = archive_seeds()

    @FUZZ
    @given(st.one_of(mutated(seeds), st.binary(max_size=4096).map(lambda noise: b"PK\x03\x04" + noise)))
    def check(data: bytes) -> None:
        try:
            entries, rejections = read_zip(data, ARCHIVE_LIMITS)
        except ArchiveRejected as exc:
            assert exc.reason
            return
        assert len(entries) + len(rejections) <= ARCHIVE_LIMITS.max_entries
        assert sum(len(entry.data) for entry in entries) <= ARCHIVE_LIMITS.max_total_bytes
        assert all(rejection.reason for rejection in rejections)
        for entry in entries:
            decodes_or_rejects(entry.data)

    within_memory(check)


def test_the_seeds_themselves_are_read() -> None:
    """The fuzzing starts from valid files: every image seed decodes (NIfTI since issue 11), every archive reads."""
    decoded = []
    for seed in image_seeds():
        try:
            decoded.append(decode_image("seed", seed, IMAGE_LIMITS).source_format)
        except ImageRejected as exc:
            decoded.append(exc.reason)
    assert decoded == ["PNG", "TIFF", "TIFF", "TIFF", "DICOM", "NIfTI"]
    for seed in archive_seeds():
        read_zip(seed, ARCHIVE_LIMITS)
