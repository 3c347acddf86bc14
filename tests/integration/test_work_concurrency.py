"""200 annotators asking and submitting at once never push an image past its replicates and never get
one image twice (issue 8: `next` answers from a selection structure, the store arbitrates the lease)."""

from __future__ import annotations

import pytest

from tests.concurrency import coverage_rows, crowd_session, sign_up_crowd, work_until_done
from tests.embedded import Api, EmbeddedServer
from tests.integration.test_work_rules import create_task, upload

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ANNOTATORS = 200
IMAGES = 40
REPLICATES = 3


async def test_a_crowd_at_once_fills_every_image_exactly_to_its_replicates(
    embedded: EmbeddedServer, taskmaster: Api
) -> None:
    task = create_task(taskmaster, replicates=REPLICATES)
    images = upload(taskmaster, task["id"], IMAGES)
    api = f"{embedded.url}/api/v1"
    async with crowd_session() as session:
        tokens = await sign_up_crowd(session, api, f"crowd-{task['id']}", ANNOTATORS)
        outcome = await work_until_done(session, api, str(task["id"]), tokens)
        rows = await coverage_rows(session, api, str(task["id"]), str(taskmaster.http.headers["Authorization"])[7:])

    assert outcome.failures == []
    assert {image["id"] for image in images} == set(outcome.accepted)
    assert all(len(users) == REPLICATES for users in outcome.accepted.values())
    assert all(len(users) == len(set(users)) for users in outcome.accepted.values())  # never one image twice
    assert all(len(done) == len(set(done)) for done in outcome.per_user.values())
    assert sum(len(users) for users in outcome.accepted.values()) == IMAGES * REPLICATES
    by_image = {row["image_id"]: row for row in rows}
    assert len(by_image) == IMAGES
    for image_id, users in outcome.accepted.items():
        row = by_image[image_id]
        assert row["submissions"] == REPLICATES and row["complete"] is True
        assert sorted(row["users"]) == sorted(users)  # type: ignore[arg-type]
