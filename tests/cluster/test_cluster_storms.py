"""The same request many times at once on the cluster profile (issue 9 item 1): every service its own
process on Kafka, FerretDB (guard mode) and MinIO, behind the gateway. The scenarios are those of the
embedded profile (tests/storms.py): one outcome, never a 5xx, and no orphaned mask in the bucket."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from crowdseg.simulation import synthetic_image
from minio import Minio

from tests.cluster.stack import ClusterStack
from tests.concurrency import crowd_session, sign_up_crowd
from tests.embedded import Api
from tests.integration.test_hostile_input import raw_request
from tests.integration.test_work_rules import create_task, upload
from tests.servers import MinioServer
from tests.storms import (
    first_visits_of_one_worker,
    fresh_ids_for_one_image,
    one_attempt,
    one_export_request,
    one_role_change,
    one_upload,
    replays_of_one_submission,
)

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

COPIES = 10


def token_of(api: Api) -> str:
    return str(api.http.headers["Authorization"])[7:]


def masks_in_bucket(minio: MinioServer, cluster: ClusterStack, task_id: object, image_id: str) -> list[str]:
    client = Minio(minio.endpoint, access_key=minio.access_key, secret_key=minio.secret_key, secure=False)
    prefix = f"masks/{task_id}/{image_id}/"
    return [str(item.object_name) for item in client.list_objects(cluster.bucket, prefix=prefix, recursive=True)]


async def test_submission_storms_on_the_cluster(cluster: ClusterStack, master: Api, minio_server: MinioServer) -> None:
    """issue 9 item 1 on the cluster: one submission id replayed at once is stored once (one 201, the
    rest 200); fresh ids for one image and user let exactly one in (one 201, the rest 409); each image
    leaves no mask in MinIO (issue 8: submissions write none; the shapes are the record)."""
    task = create_task(master, replicates=3)
    first, second = upload(master, task["id"], 2)
    api = f"{cluster.url}/api/v1"
    async with crowd_session() as session:
        replayer, racer = await sign_up_crowd(session, api, f"cluster-storm-{task['id']}", 2)
        await replays_of_one_submission(session, api, str(task["id"]), first["id"], replayer, COPIES)
        await fresh_ids_for_one_image(session, api, str(task["id"]), second["id"], racer, COPIES)
    assert masks_in_bucket(minio_server, cluster, task["id"], first["id"]) == []
    assert masks_in_bucket(minio_server, cluster, task["id"], second["id"]) == []
    assert master.http.get(f"/tasks/{task['id']}/stats").json()["submissions"] == 2


async def test_upload_export_role_and_attempt_storms_on_the_cluster(cluster: ClusterStack, master: Api) -> None:
    """issue 9 item 1 on the cluster: one upload, one export request, one role change and one
    qualification attempt, each fired many times at once: one outcome each and never a 5xx. (Adding
    the tutorial answered 500 on the cluster: the ingest service's settings lacked the shape limit.)"""
    api = f"{cluster.url}/api/v1"
    task = create_task(master, pass_threshold=0.95)
    tutorial = synthetic_image(9, 96, 96)
    added = master.http.post(
        f"/tasks/{task['id']}/tutorial",
        files={"file": ("tutorial.png", io.BytesIO(tutorial.png), "image/png")},
        data={"shapes": json.dumps([{"type": "contour", "points": tutorial.outline}])},
    )
    assert added.status_code == 201, added.text
    target = Api.sign_up(cluster.url, f"roles-{uuid.uuid4().hex[:8]}@cluster.crowdseg")
    async with crowd_session() as session:
        await one_upload(session, api, str(task["id"]), token_of(master), COPIES, synthetic_image(5, 48, 48).png)
        await one_export_request(session, api, str(task["id"]), token_of(master), 4)
        await one_role_change(session, api, token_of(master), str(target.user["id"]), token_of(target), COPIES)
        (token,) = await sign_up_crowd(session, api, f"cluster-attempts-{task['id']}", 1)
        await one_attempt(session, api, str(task["id"]), str(added.json()["id"]), token, COPIES)


@pytest.mark.parametrize("route", ["images", "tutorial"])
def test_uploads_are_refused_before_their_body_is_read_through_the_gateway(
    cluster: ClusterStack, master: Api, route: str
) -> None:
    """issue 9 item 6 on the cluster: the gateway streams the upload to ingest, which answers 401 before
    reading the body; the answer comes while the client has sent 64 KiB of an announced 300 MiB."""
    task = create_task(master)
    boundary = "hostile"
    first = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n\r\n'
    ).encode() + b"\0" * 65_536
    head = (
        f"POST /api/v1/tasks/{task['id']}/{route} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {300 * 2**20}\r\n\r\n"
    )
    answer = raw_request(cluster.url, head, first)
    assert int(answer.split(b" ", 2)[1]) == 401, answer[:300]


async def test_a_study_link_through_the_gateway_on_the_cluster(cluster: ClusterStack, master: Api) -> None:
    """External crowds on the cluster (FerretDB in guard mode): simultaneous first visits of one worker
    make one account; the worker works up to the quota through the gateway, gets the code, and the
    ledger has their row; a removed member loses the private task."""
    api = f"{cluster.url}/api/v1"
    task = create_task(master, visibility="private")
    upload(master, task["id"], 2)
    created = master.http.post(f"/tasks/{task['id']}/links", json={"kind": "generic", "quota": 1})
    assert created.status_code == 201, created.text
    link = created.json()
    async with crowd_session() as session:
        token = await first_visits_of_one_worker(session, api, link["id"], "cluster-worker", COPIES)
    worker = Api(cluster.url, token)
    answer = worker.http.get(f"/tasks/{task['id']}/next")
    assert answer.status_code == 200 and answer.json()["progress"]["images"] == 0, answer.text
    body = {
        "id": uuid.uuid4().hex,
        "image_id": answer.json()["image"]["id"],
        "duration_ms": 1500,
        "shapes": [{"type": "contour", "points": [[10, 10], [40, 10], [40, 40], [10, 40]]}],
    }
    assert worker.http.post(f"/tasks/{task['id']}/submissions", json=body).status_code == 201
    assert worker.http.get(f"/tasks/{task['id']}/next").status_code == 204
    progress = worker.http.get(f"/links/{link['id']}/progress").json()
    assert progress["done"] and progress["completion_code"] == link["completion_code"]
    ledger = master.http.get(f"/tasks/{task['id']}/ledger")
    assert ledger.status_code == 200 and ledger.headers["content-type"].startswith("text/csv")
    rows = ledger.text.splitlines()
    assert rows[0].startswith("external_id,kind,images,seconds,first_at,last_at")
    assert len(rows) == 2 and rows[1].startswith("cluster-worker,generic,1,1.5,")
    member = Api.sign_up(cluster.url, f"member-{uuid.uuid4().hex[:8]}@cluster.crowdseg")
    invitation = master.http.post(f"/tasks/{task['id']}/invitations", json={"expires_in_hours": 1}).json()
    assert member.http.post(f"/invitations/{invitation['id']}/accept").status_code == 200
    assert member.http.get(f"/tasks/{task['id']}").status_code == 200
    assert master.http.delete(f"/tasks/{task['id']}/members/{member.user['id']}").status_code == 200
    assert member.http.get(f"/tasks/{task['id']}").status_code == 404
