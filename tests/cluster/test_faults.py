"""Faults on the cluster profile. Each test ends with every accepted submission stored and every
image's consensus including all of its submissions.

- the same event delivered twice changes nothing (idempotent handlers);
- a malformed event goes to the consumer's dead-letter topic and the consumer carries on;
- ``kill -9`` of a consensus worker while it recomputes: the group rebalances, the other finishes;
- the Kafka broker stops and restarts while annotators submit: the API accepts durably (outbox) or
  answers a retryable 503, and nothing accepted is lost.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from crowdseg.events import SUBMISSION_ACCEPTED, SubmissionAccepted, dead_letter_topic

from tests.cluster.crowd import CrowdTask, wait_for
from tests.cluster.kafka_tools import produce, read_topic, run, wait_committed_past
from tests.cluster.stack import ClusterStack, ServiceProcess
from tests.embedded import Api
from tests.servers import FerretDBServer, KafkaServer

pytestmark = pytest.mark.cluster

GROUP = "consensus"
ASSIGNED = re.compile(r"assigned to partitions")


def _crowd(cluster: ClusterStack, prefix: str, n: int) -> list[Api]:
    return [Api.sign_up(cluster.url, f"{prefix}-{i}-{uuid.uuid4().hex[:6]}@cluster.crowdseg") for i in range(n)]


def test_the_same_event_delivered_twice_changes_nothing(cluster: ClusterStack, master: Api) -> None:
    task = CrowdTask.create(master, images=2, replicates=3, seed=21, title="duplicates")
    for n, api in enumerate(_crowd(cluster, "dup", 3)):
        task.annotate(api, bad=False, seed=n)
    before = task.assert_nothing_lost()

    submission_id, image_id = next(iter(task.accepted.items()))
    needle = submission_id.encode()
    records = run(
        read_topic(cluster.kafka.bootstrap, SUBMISSION_ACCEPTED, until=lambda rs: any(needle in r.value for r in rs))
    )
    original = next(r for r in records if needle in r.value)
    event = SubmissionAccepted.model_validate_json(original.value)
    assert (event.submission_id, event.image_id) == (submission_id, image_id)

    partition, offset = run(produce(cluster.kafka.bootstrap, SUBMISSION_ACCEPTED, original.value, original.key))
    assert partition == original.partition  # keyed by image id: the same worker's partition
    wait_committed_past(cluster.kafka.bootstrap, GROUP, SUBMISSION_ACCEPTED, partition, offset)

    after = {image: task.consensus(image) for image in before}
    assert after == before  # not recomputed, not re-versioned, not touched

    # The same submission id over HTTP from someone else is a conflict, never a second submission.
    triangle = [{"type": "contour", "points": [[1, 1], [9, 1], [5, 9]]}]
    again = master.http.post(
        f"/tasks/{task.task_id}/submissions", json={"id": submission_id, "image_id": image_id, "shapes": triangle}
    )
    assert again.status_code == 409, again.text
    assert task.stored_counts() == {image: 3 for image in before}
    assert {image: task.consensus(image) for image in before} == before


def test_a_malformed_event_is_dead_lettered_and_the_consumer_carries_on(cluster: ClusterStack, master: Api) -> None:
    bootstrap = cluster.kafka.bootstrap
    marker = uuid.uuid4().hex
    poison = [
        f"not json at all {marker}".encode(),
        json.dumps({"event_id": marker, "schema_version": 99, "image_id": 7}).encode(),
        # well-formed, but about an image nobody has: a permanent refusal, dead-lettered without a loop
        SubmissionAccepted(
            task_id=f"task-{marker}", image_id=f"image-{marker}", submission_id=marker, user_id="nobody"
        ).model_dump_json().encode(),
    ]
    for value in poison:
        partition, offset = run(produce(bootstrap, SUBMISSION_ACCEPTED, value, key=f"image-{marker}".encode()))
        wait_committed_past(bootstrap, GROUP, SUBMISSION_ACCEPTED, partition, offset)

    dlq = run(
        read_topic(
            bootstrap,
            dead_letter_topic(GROUP),
            until=lambda rs: sum(marker.encode() in r.value for r in rs) >= len(poison),
        )
    )
    dead = [r for r in dlq if marker.encode() in r.value]
    assert sorted(r.value for r in dead) == sorted(poison)
    for record in dead:
        headers = {k: v.decode() for k, v in record.headers}
        assert headers["x-original-topic"] == SUBMISSION_ACCEPTED
        assert headers["x-consumer-group"] == GROUP
        assert headers["x-error"]

    # The consumer carries on: new work after the poison is handled.
    task = CrowdTask.create(master, images=2, replicates=2, seed=23, title="after poison")
    for n, api in enumerate(_crowd(cluster, "poison", 2)):
        task.annotate(api, bad=False, seed=n)
    task.assert_nothing_lost()


def _bus_lines(process: ServiceProcess, since: int) -> list[str]:
    with process.log_path.open("rb") as log:
        log.seek(since)
        text = log.read().decode(errors="replace")
    return [line for line in text.splitlines() if "crowdseg.bus:" in line]


def test_kill_9_a_consensus_worker_mid_recompute(cluster: ClusterStack, master: Api) -> None:
    victim, survivor = cluster.services["consensus-1"], cluster.services["consensus-0"]
    task = CrowdTask.create(master, images=8, replicates=6, seed=31, size=512, title="kill a worker")
    crowd = _crowd(cluster, "kill", 6)
    mark = victim.log_path.stat().st_size
    assignments_before = len(ASSIGNED.findall(survivor.log_path.read_text(errors="replace")))
    killed_in_flight = False
    try:
        with ThreadPoolExecutor(len(crowd)) as pool:
            work = [pool.submit(task.annotate, api, bad=n == 0, seed=n) for n, api in enumerate(crowd)]

            def victim_busy() -> bool:
                lines = _bus_lines(victim, mark)
                return bool(lines) and lines[-1].rstrip().endswith("Received")

            wait_for(victim_busy, 120, "the worker to take an event")
            victim.kill()  # SIGKILL in the middle of a recomputation: its offset is not committed
            killed_in_flight = _bus_lines(victim, mark)[-1].rstrip().endswith("Received")
            for future in work:
                future.result()
        assert killed_in_flight, "the worker had finished before it was killed"

        def rebalanced() -> bool:
            text = survivor.log_path.read_text(errors="replace")
            return len(ASSIGNED.findall(text)) > assignments_before

        wait_for(rebalanced, 120, "the group to rebalance onto the surviving worker")
        found = task.assert_nothing_lost(timeout=240)
        assert all(c["submissions"] == 6 for c in found.values())
    finally:
        victim.start()  # back to two workers; it reconciles on start (readiness is checked by the next test)


def test_a_store_outage_redelivers_events_instead_of_dead_lettering_them(
    cluster: ClusterStack, master: Api, mongo_server: FerretDBServer
) -> None:
    for process in cluster.services.values():  # a process starting during the outage would (rightly) exit
        process.wait_ready()
    task = CrowdTask.create(master, images=2, replicates=2, seed=27, title="store outage")
    for n, api in enumerate(_crowd(cluster, "store", 2)):
        task.annotate(api, bad=False, seed=n)
    before = task.assert_nothing_lost()
    submission_id, image_id = next(iter(task.accepted.items()))
    [user_id] = [c["user_id"] for c in before[image_id]["raters"] if c["submission_id"] == submission_id]
    event = SubmissionAccepted(task_id=task.task_id, image_id=image_id, submission_id=submission_id, user_id=user_id)
    bootstrap = cluster.kafka.bootstrap

    mongo_server.stop()  # every service loses its document store
    try:
        partition, offset = run(
            produce(bootstrap, SUBMISSION_ACCEPTED, event.model_dump_json().encode(), key=image_id.encode())
        )
        time.sleep(5)  # the consumer retries, finds the store still down, and must not give the event up
    finally:
        mongo_server.start()
    wait_committed_past(bootstrap, GROUP, SUBMISSION_ACCEPTED, partition, offset, timeout=180)
    dlq = run(read_topic(bootstrap, dead_letter_topic(GROUP), seconds=10))
    assert not [r for r in dlq if event.event_id.encode() in r.value], "a valid event was dead-lettered"
    for process in cluster.services.values():  # and every running service is back on its store
        process.wait_ready()
    assert {image: task.consensus(image) for image in before} == before


def test_kafka_stops_and_restarts_while_annotators_submit(
    cluster: ClusterStack, master: Api, kafka_server: KafkaServer
) -> None:
    for process in cluster.services.values():
        process.wait_ready()
    task = CrowdTask.create(master, images=8, replicates=4, seed=41, title="broker outage")
    crowd = _crowd(cluster, "outage", 4)
    with ThreadPoolExecutor(len(crowd)) as pool:
        work = [
            pool.submit(task.annotate, api, bad=False, seed=n, pause=0.5, retry_for=240) for n, api in enumerate(crowd)
        ]
        wait_for(lambda: len(task.accepted) >= 4, 120, "the first submissions")
        kafka_server.stop()
        accepted_when_down = len(task.accepted)
        time.sleep(2)
        kafka_server.start()
        accepted_while_down = len(task.accepted) - accepted_when_down
        for future in work:
            future.result()
    assert accepted_while_down > 0  # the API kept accepting durably while the broker was down
    assert len(task.accepted) == 8 * 4
    task.assert_nothing_lost(timeout=300)
