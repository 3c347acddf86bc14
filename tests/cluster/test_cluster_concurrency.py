"""200 annotators at once on the cluster profile, served by two assign replicas whose selection
structures know nothing of each other's leases: the store's atomic lease keeps every image at its
replicates and never gives one user an image twice (issue 8)."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.cluster.stack import ClusterStack
from tests.concurrency import coverage_rows, crowd_session, sign_up_crowd, work_until_done
from tests.embedded import Api
from tests.integration.test_work_rules import create_task, upload

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ANNOTATORS = 200
IMAGES = 30
REPLICATES = 3


async def test_two_assign_replicas_and_a_crowd_fill_every_image_exactly(cluster: ClusterStack, master: Api) -> None:
    second = cluster.add_replica("assign")
    task = create_task(master, replicates=REPLICATES)
    images = upload(master, task["id"], IMAGES)
    gateway = f"{cluster.url}/api/v1"
    token = str(master.http.headers["Authorization"])[7:]
    async with crowd_session() as session:
        tokens = await sign_up_crowd(session, gateway, f"cluster-crowd-{task['id']}", ANNOTATORS)
        # Half the crowd asks the gateway's assign service, half the second replica; all submit through the gateway.
        halves = await asyncio.gather(
            work_until_done(session, gateway, str(task["id"]), tokens[::2]),
            work_until_done(session, gateway, str(task["id"]), tokens[1::2], next_api=f"{second.url}/api/v1"),
        )
        rows = await coverage_rows(session, gateway, str(task["id"]), token)

    accepted: dict[str, list[str]] = {}
    for outcome in halves:
        assert outcome.failures == []
        for image_id, users in outcome.accepted.items():
            accepted.setdefault(image_id, []).extend(users)
    assert set(accepted) == {image["id"] for image in images}
    assert all(len(users) == REPLICATES == len(set(users)) for users in accepted.values())
    by_image = {row["image_id"]: row for row in rows}
    assert all(by_image[i]["submissions"] == REPLICATES for i in accepted)


def test_an_expired_lease_comes_back_on_the_cluster(cluster: ClusterStack, master: Api) -> None:
    task = create_task(master, replicates=1, lease_seconds=10)
    (image,) = upload(master, task["id"], 1)
    alice = Api.sign_up(cluster.url, f"alice-{task['id']}@cluster.crowdseg")
    bob = Api.sign_up(cluster.url, f"bob-{task['id']}@cluster.crowdseg")
    assert alice.http.get(f"/tasks/{task['id']}/next").json()["image"]["id"] == image["id"]
    assert bob.http.get(f"/tasks/{task['id']}/next").status_code == 204  # alice's lease holds the only slot
    time.sleep(10.5)
    assert bob.http.get(f"/tasks/{task['id']}/next").json()["image"]["id"] == image["id"]
