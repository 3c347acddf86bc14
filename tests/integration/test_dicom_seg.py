"""The consensus of a DICOM upload as a DICOM SEG (issue 11): six raters outline a sphere on an uploaded
series (tilted, shuffled in its ZIP); ``seg.dcm`` reads back with pydicom and highdicom, references
every uploaded instance in the series' frame of reference, each SEG frame at its slice's position, and
its pixels are the consensus volume of ``mask.nii.gz``; the export holds the same object. A source
that is not DICOM is 409, no consensus yet 404, a legacy multi-frame file 422."""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.uid import SegmentationStorage

from tests.embedded import Api, EmbeddedServer, export_bundle, wait_for
from tests.integration.test_stack_consensus import (
    FRAMES,
    RATERS,
    SIZE,
    SPACING,
    create_task,
    crowd,
    outline,
    settled,
    sphere_radius_px,
    submit,
    upload_stack,
)
from tests.stack_inputs import multiframe_dicom, sphere_series, tiff_stack

pytestmark = pytest.mark.integration


def uploaded_instances(series: bytes) -> list[pydicom.Dataset]:
    with zipfile.ZipFile(io.BytesIO(series)) as archive:
        return [pydicom.dcmread(io.BytesIO(archive.read(n)), stop_before_pixels=True) for n in archive.namelist()]


def test_the_consensus_of_a_series_is_a_dicom_seg_of_its_instances(
    embedded: EmbeddedServer, taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    task_id = create_task(taskmaster, "contour", RATERS, max_shapes=1)
    series, _ = sphere_series(shape=(FRAMES, SIZE, SIZE), radius_mm=10.0, spacing=SPACING)
    image_id = upload_stack(taskmaster, task_id, "sphere.zip", series, "application/zip")["id"]
    early = taskmaster.http.get(f"/images/{image_id}/consensus/seg.dcm")
    assert early.status_code == 404 and "no consensus" in early.text, early.text
    drawn = [f for f in range(FRAMES) if sphere_radius_px(f) >= 3.0]
    for n, annotator in enumerate(crowd(taskmaster, task_id, annotator_factory, RATERS)):
        rng = np.random.default_rng(40 + n)
        shapes = [{"type": "contour", "points": outline(f, rng), "frame": f} for f in drawn]
        assert submit(annotator, task_id, image_id, shapes).status_code == 201
    wait_for(settled(taskmaster, image_id, RATERS), 120, "the consensus of six raters")

    response = taskmaster.http.get(f"/images/{image_id}/consensus/seg.dcm")
    assert response.status_code == 200 and response.headers["content-type"] == "application/dicom", response.text
    assert taskmaster.http.get(f"/images/{image_id}/consensus/seg.dcm").content == response.content  # kept
    nifti = nib.Nifti1Image.from_bytes(
        gzip.decompress(taskmaster.http.get(f"/images/{image_id}/consensus/mask.nii.gz").content)
    )
    consensus = np.transpose(np.asarray(nifti.dataobj), (2, 1, 0)) > 0  # (frames, rows, columns)
    assert consensus.any()

    seg = pydicom.dcmread(io.BytesIO(response.content))
    sources = uploaded_instances(series)
    assert seg.SOPClassUID == SegmentationStorage and seg.SegmentationType == "BINARY"
    assert (seg.StudyInstanceUID, seg.FrameOfReferenceUID, seg.PatientID) == (
        sources[0].StudyInstanceUID,
        sources[0].FrameOfReferenceUID,
        sources[0].PatientID,
    )
    [referenced] = seg.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == sources[0].SeriesInstanceUID
    assert {i.ReferencedSOPInstanceUID for i in referenced.ReferencedInstanceSequence} == {
        s.SOPInstanceUID for s in sources
    }
    by_uid = {s.SOPInstanceUID: s for s in sources}
    for frame in seg.PerFrameFunctionalGroupsSequence:
        [source] = frame.DerivationImageSequence[0].SourceImageSequence
        position = frame.PlanePositionSequence[0].ImagePositionPatient
        assert np.allclose(position, by_uid[source.ReferencedSOPInstanceUID].ImagePositionPatient)

    # The frames in the platform's order: the slices sorted along the normal, as the frame slider shows.
    read = hd.seg.segread(io.BytesIO(response.content))
    normal = np.cross(np.asarray(sources[0].ImageOrientationPatient[:3]), sources[0].ImageOrientationPatient[3:])
    in_order = sorted(sources, key=lambda s: float(np.asarray(s.ImagePositionPatient) @ normal))
    pixels = read.get_pixels_by_source_instance(
        [s.SOPInstanceUID for s in in_order], segment_numbers=[1], combine_segments=True
    )
    assert np.array_equal(pixels > 0, consensus)
    assert read.get_segment_description(1).SegmentLabel == "consensus"

    archive = export_bundle(taskmaster, task_id)
    [exported] = [n for n in archive.namelist() if n.endswith(".seg.dcm")]
    assert exported.startswith("masks/") and archive.read(exported) == response.content


def test_seg_of_a_source_that_is_not_dicom_or_cannot_be_referenced_is_refused(
    embedded: EmbeddedServer, taskmaster: Api, annotator_factory: Callable[[], Api]
) -> None:
    movie_task = create_task(taskmaster, "contour", 1, max_shapes=1)
    movie = upload_stack(
        taskmaster, movie_task, "movie.tif", tiff_stack([np.zeros((16, 16), np.uint8)] * 3), "image/tiff"
    )
    cine_task = create_task(taskmaster, "contour", 1, max_shapes=1)
    cine = upload_stack(
        taskmaster,
        cine_task,
        "cine.dcm",
        multiframe_dicom(np.zeros((3, 16, 16)) + 7, SliceThickness=2.0),
        "application/dicom",
    )
    square = [[2, 2], [12, 2], [12, 12], [2, 12]]
    for task_id, image in ((movie_task, movie), (cine_task, cine)):
        [annotator] = crowd(taskmaster, task_id, annotator_factory, 1)
        stored = submit(annotator, task_id, image["id"], [{"type": "contour", "points": square, "frame": 1}])
        assert stored.status_code == 201, stored.text
        wait_for(settled(taskmaster, image["id"], 1), 120, "the consensus")
    not_dicom = taskmaster.http.get(f"/images/{movie['id']}/consensus/seg.dcm")
    assert not_dicom.status_code == 409 and "not DICOM" in not_dicom.text, not_dicom.text
    legacy = taskmaster.http.get(f"/images/{cine['id']}/consensus/seg.dcm")
    assert legacy.status_code == 422 and "legacy multi-frame" in legacy.text, legacy.text
