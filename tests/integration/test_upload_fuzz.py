"""Hypothesis fuzzing of the upload route over HTTP (issue 9): mutated ZIP, PNG, TIFF, DICOM and NIfTI
files uploaded to the embedded platform are accepted or refused with a 4xx, never a 5xx, and the
server stays up. Bounded (max_examples) so the suite stays quick; tests/unit/test_reader_fuzz.py runs
many more examples on the readers themselves."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.embedded import Api, EmbeddedServer
from tests.fuzzing import archive_seeds, image_seeds, mutated
from tests.integration.test_work_rules import create_task

pytestmark = pytest.mark.integration

SEEDS = image_seeds() + archive_seeds()


def test_mutated_uploads_never_answer_5xx(embedded: EmbeddedServer, taskmaster: Api) -> None:
    """issue 9 (fuzzing): no uploaded bytes make the upload route answer a 5xx."""
    task = create_task(taskmaster)
    url = f"/tasks/{task['id']}/images"
    answered: list[int] = []

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(st.one_of(mutated(SEEDS), st.binary(max_size=1024)), min_size=1, max_size=3))
    def check(files: list[bytes]) -> None:
        names = [f"fuzz-{len(answered)}-{n}.bin" for n in range(len(files))]
        parts = [("files", (name, data, "application/octet-stream")) for name, data in zip(names, files, strict=True)]
        response = taskmaster.http.post(url, files=parts)
        answered.append(response.status_code)
        assert response.status_code in (202, 413, 422), (response.status_code, response.text[:300])
        assert isinstance(response.json()["detail" if response.status_code != 202 else "accepted"], str | list)

    check()
    assert taskmaster.http.get(f"/tasks/{task['id']}").status_code == 200  # still serving
    assert 422 in answered and 202 in answered, answered
