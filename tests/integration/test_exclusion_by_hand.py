"""Excluding and re-admitting a rater by hand over HTTP on the embedded platform (issue 10, screening:
"the task master can also exclude or re-admit one rater by hand").

The crowd of tests/integration/test_quality_control.py (careful annotators and one spammer). Putting
the spammer in the task's ``excluded_users`` rescores every image as a change of screening does: the
spammer is left out of every consensus (``excluded`` in the consensus raters and the stats) and the
consensus is what the careful crowd alone makes. Re-admitting them (``admitted_users``) keeps them in
even under a screening that would leave them out; clearing both lists brings the first consensus back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest

from tests.embedded import Api, EmbeddedServer, wait_for
from tests.integration.test_quality_control import crowd_task
from tests.integration.test_screening import consensus_dice, excluded_raters

pytestmark = pytest.mark.integration


@pytest.fixture
def exclusion_server(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A platform of its own that reconciles every second (the rescoring is reconciliation's work)."""
    monkeypatch.setenv("CROWDSEG_RECONCILE_SECONDS", "1")
    server = EmbeddedServer(tmp_path_factory.mktemp("exclusion") / "data").start()
    try:
        yield server.url
    finally:
        server.stop()


def test_excluding_the_spammer_by_hand_brings_the_consensus_back(exclusion_server: str) -> None:
    owner = Api.sign_up(exclusion_server, "owner@exclusion.crowdseg", "Owner")

    def annotator() -> Api:
        return Api.sign_up(exclusion_server, f"an-{uuid.uuid4().hex[:8]}@exclusion.crowdseg", "Annotator")

    crowd = crowd_task(owner, annotator)
    task_id, spammer = crowd["task_id"], crowd["spammer"]
    before = consensus_dice(owner, crowd)
    task = owner.http.get(f"/tasks/{task_id}").json()
    assert (task["excluded_users"], task["admitted_users"]) == ([], [])

    both = {"excluded_users": [spammer], "admitted_users": [spammer]}
    for bad, status in (
        (both, 422),
        ({"excluded_users": spammer}, 422),
        ({"excluded_users": [""]}, 422),
        ({"excluded_users": ["no-such-user"]}, 404),
    ):
        assert owner.http.patch(f"/tasks/{task_id}", json=bad).status_code == status, bad
    assert owner.http.get(f"/tasks/{task_id}").json()["excluded_users"] == []  # bad input changed nothing

    patched = owner.http.patch(f"/tasks/{task_id}", json={"excluded_users": [spammer]})
    assert patched.status_code == 200 and patched.json()["excluded_users"] == [spammer], patched.text
    wait_for(lambda: all(excluded_raters(owner, i).get(spammer) for i in crowd["drawn"]), 120, "the spammer out")
    for image_id in crowd["drawn"]:
        assert [u for u, out in excluded_raters(owner, image_id).items() if out] == [spammer]
    users = {row["user_id"]: row for row in owner.http.get(f"/tasks/{task_id}/stats").json()["users"]}
    assert [u for u, row in users.items() if row["excluded"]] == [spammer]
    by_hand = consensus_dice(owner, crowd)
    assert by_hand > before, (before, by_hand)

    # Screening leaves them out too; the same consensus as by hand.
    owner.http.patch(f"/tasks/{task_id}", json={"excluded_users": [], "screening": {"min_quality": 0.5}})
    wait_for(lambda: all(excluded_raters(owner, i).get(spammer) for i in crowd["drawn"]), 120, "screened out")
    assert np.isclose(consensus_dice(owner, crowd), by_hand)

    # Re-admitted by hand: back in, whatever screening says.
    readmitted = owner.http.patch(f"/tasks/{task_id}", json={"admitted_users": [spammer]})
    assert readmitted.json()["admitted_users"] == [spammer] and readmitted.json()["excluded_users"] == []
    wait_for(lambda: not any(any(excluded_raters(owner, i).values()) for i in crowd["drawn"]), 120, "readmission")
    assert np.isclose(consensus_dice(owner, crowd), before)

    # Excluding again takes them off the admitted list.
    again = owner.http.patch(f"/tasks/{task_id}", json={"excluded_users": [spammer]}).json()
    assert (again["excluded_users"], again["admitted_users"]) == ([spammer], [])
