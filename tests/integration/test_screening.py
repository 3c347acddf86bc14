"""Screening over HTTP on the embedded platform (issue 10, screening).

The crowd of tests/integration/test_quality_control.py (careful annotators and one spammer who draws
random blobs). Setting the task's ``screening`` rescores every image through reconciliation: the
spammer, whose quality is low over enough images, is left out of every consensus (shown
``excluded`` in the consensus raters and the stats), and the consensus comes closer to the truth.
Switching screening off brings them back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from statistics import fmean
from typing import Any

import numpy as np
import pytest
from crowdseg.geometry import png_to_mask

from tests.embedded import Api, EmbeddedServer, wait_for
from tests.integration.test_quality_control import contour, crowd_task, dice, mask_of

pytestmark = pytest.mark.integration


@pytest.fixture
def screening_server(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A platform of its own that reconciles every second (rescoring after a change of screening is
    reconciliation's work)."""
    monkeypatch.setenv("CROWDSEG_RECONCILE_SECONDS", "1")
    server = EmbeddedServer(tmp_path_factory.mktemp("screening") / "data").start()
    try:
        yield server.url
    finally:
        server.stop()


def consensus_dice(api: Api, crowd: dict[str, Any]) -> float:
    scores = []
    for image_id in crowd["drawn"]:
        found = png_to_mask(api.http.get(f"/images/{image_id}/consensus/mask.png").content)
        truth = mask_of([contour(crowd["truth"][crowd["names"][image_id]].outline)])
        scores.append(dice(found.astype(bool), truth.astype(bool)))
    return fmean(scores)


def excluded_raters(api: Api, image_id: str) -> dict[str, bool]:
    return {r["user_id"]: r["excluded"] for r in api.http.get(f"/images/{image_id}/consensus").json()["raters"]}


def test_screening_leaves_the_spammer_out_and_the_consensus_closer_to_the_truth(screening_server: str) -> None:
    owner = Api.sign_up(screening_server, "owner@screening.crowdseg", "Owner")  # the first account: admin

    def annotator() -> Api:
        return Api.sign_up(screening_server, f"an-{uuid.uuid4().hex[:8]}@screening.crowdseg", "Annotator")

    crowd = crowd_task(owner, annotator)
    task_id, spammer = crowd["task_id"], crowd["spammer"]
    before = consensus_dice(owner, crowd)
    assert owner.http.get(f"/tasks/{task_id}").json()["screening"] is None
    for bad in ({"min_quality": 2}, {"min_quality": "high"}, {"min_quality": True}, {"quality": 0.5}, 0.5):
        assert owner.http.patch(f"/tasks/{task_id}", json={"screening": bad}).status_code == 422, bad
    assert owner.http.get(f"/tasks/{task_id}").json()["screening"] is None  # bad input changed nothing

    patched = owner.http.patch(f"/tasks/{task_id}", json={"screening": {"min_quality": 0.5}})
    assert patched.status_code == 200 and patched.json()["screening"] == {"min_quality": 0.5}, patched.text

    def all_screened() -> bool:
        return all(excluded_raters(owner, i).get(spammer) for i in crowd["drawn"])

    wait_for(all_screened, 120, "every consensus without the spammer")
    for image_id in crowd["drawn"]:
        assert [u for u, out in excluded_raters(owner, image_id).items() if out] == [spammer]
    users = {row["user_id"]: row for row in owner.http.get(f"/tasks/{task_id}/stats").json()["users"]}
    assert [u for u, row in users.items() if row["excluded"]] == [spammer]
    assert users[spammer]["quality_images"] == len(crowd["drawn"])  # still scored: the evidence stands
    after = consensus_dice(owner, crowd)
    assert after > before, (before, after)

    assert owner.http.patch(f"/tasks/{task_id}", json={"screening": None}).json()["screening"] is None
    wait_for(lambda: not any(any(excluded_raters(owner, i).values()) for i in crowd["drawn"]), 120, "readmission")
    assert np.isclose(consensus_dice(owner, crowd), before)
