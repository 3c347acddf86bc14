"""The Store port's contract: one suite, run against every store adapter (see conftest.py).

Concurrency tests start many coroutines at once on one store; on the cluster backend their
requests interleave on the server, which is what the atomic operations must withstand.
"""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from crowdseg.domain import (
    Consensus,
    Export,
    GoldScore,
    Image,
    Metric,
    PendingEvent,
    QualificationAttempt,
    RaterScore,
    Review,
    Role,
    Shape,
    Submission,
    Task,
    Tool,
    User,
    new_id,
)
from crowdseg.errors import Conflict
from crowdseg.ports import Store

pytestmark = pytest.mark.contract

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=10)
SQUARE = [Shape(type=Tool.POLYGON, points=[(0, 0), (4, 0), (4, 4), (0, 4)])]


def user(name: str = "ann") -> User:
    return User(email=f"{name}-{new_id()[:6]}@example.org", name=name, password_hash="x")


def task(owner: str = "owner", replicates: int = 3) -> Task:
    return Task(owner_id=owner, title="nuclei", tool=Tool.POLYGON, replicates=replicates)


def image(task_id: str, name: str = "a.png", *, tutorial: bool = False, events: int = 0) -> Image:
    return Image(
        task_id=task_id,
        name=name,
        width=8,
        height=8,
        source_format="PNG",
        original_key=f"{task_id}/{name}",
        display_key=f"{task_id}/{name}.png",
        display_media_type="image/png",
        thumbnail_key=f"{task_id}/{name}.thumb.png",
        thumbnail_media_type="image/png",
        tutorial=tutorial,
        outbox=[event("crowdseg.image.ingested.v1", task_id) for _ in range(events)],
    )


def event(topic: str, key: str) -> PendingEvent:
    return PendingEvent(topic=topic, key=key, payload={"event_id": new_id(), "id": key})


def submission(img: Image, user_id: str, submission_id: str | None = None, *, events: int = 0) -> Submission:
    return Submission(
        id=submission_id or new_id(),
        task_id=img.task_id,
        image_id=img.id,
        user_id=user_id,
        shapes=SQUARE,
        outbox=[event("crowdseg.submission.accepted.v1", img.id) for _ in range(events)],
    )


def consensus(img: Image, count: int) -> Consensus:
    return Consensus(
        image_id=img.id,
        task_id=img.task_id,
        version=count,
        submissions=count,
        submission_ids=[f"s{i}" for i in range(count)],
        method="staple",
        tool=Tool.POLYGON,
        raters=[],
    )


async def stored_image(store: Store, replicates: int = 3) -> tuple[Task, Image]:
    t = task(replicates=replicates)
    await store.tasks.add(t)
    img = image(t.id)
    assert await store.images.add(img)
    return t, img


# ---------------------------------------------------------------------------------------- users
async def test_users_crud_and_first_user_is_admin(store: Store) -> None:
    first, second = user("first"), user("second")
    stored_first = await store.users.add(first)
    stored_second = await store.users.add(second)
    assert Role.ADMIN in stored_first.roles
    assert stored_second.roles == [Role.ANNOTATOR]
    assert await store.users.get(first.id) == stored_first
    assert await store.users.by_email(second.email) == stored_second
    assert await store.users.get("nobody") is None
    assert await store.users.by_email("nobody@example.org") is None
    assert {u.id for u in await store.users.all()} == {first.id, second.id}


async def test_duplicate_email_is_a_conflict(store: Store) -> None:
    first = await store.users.add(user())
    with pytest.raises(Conflict):
        await store.users.add(User(email=first.email, name="again", password_hash="y"))
    assert len(await store.users.all()) == 1


async def test_set_roles(store: Store) -> None:
    await store.users.add(user("admin"))
    someone = await store.users.add(user())
    updated = await store.users.set_roles(someone.id, [Role.TASKMASTER])
    assert updated is not None and updated.roles == [Role.TASKMASTER]
    stored = await store.users.get(someone.id)
    assert stored is not None and stored.roles == [Role.TASKMASTER]
    assert await store.users.set_roles("nobody", [Role.ADMIN]) is None


async def test_exactly_one_first_admin_under_concurrency(store: Store) -> None:
    added = await asyncio.gather(*(store.users.add(user(f"u{i}")) for i in range(12)))
    assert sum(Role.ADMIN in u.roles for u in added) == 1
    stored = await store.users.all()
    assert len(stored) == 12
    assert sum(Role.ADMIN in u.roles for u in stored) == 1


async def test_concurrent_same_email_stores_one_user(store: Store) -> None:
    email = f"same-{new_id()[:6]}@example.org"
    results = await asyncio.gather(
        *(store.users.add(User(email=email, name=f"u{i}", password_hash="x")) for i in range(8)),
        return_exceptions=True,
    )
    assert sum(isinstance(r, User) for r in results) == 1
    assert all(isinstance(r, User | Conflict) for r in results)
    assert len(await store.users.all()) == 1


# ---------------------------------------------------------------------------------------- tasks
async def test_tasks_crud_and_members(store: Store) -> None:
    t = task()
    await store.tasks.add(t)
    assert await store.tasks.get(t.id) == t
    assert await store.tasks.get("missing") is None
    renamed = t.model_copy(update={"title": "mitochondria", "replicates": 5})
    await store.tasks.replace(renamed)
    assert await store.tasks.get(t.id) == renamed
    await store.tasks.add_member(t.id, "u1")
    await store.tasks.add_member(t.id, "u1")
    await store.tasks.add_member("missing", "u1")
    stored = await store.tasks.get(t.id)
    assert stored is not None and stored.members == ["u1"] and stored.title == "mitochondria"
    assert [x.id for x in await store.tasks.all()] == [t.id]


async def test_tasks_keep_raters_excluded_and_admitted_by_hand(store: Store) -> None:
    t = task()
    await store.tasks.add(t)
    by_hand = t.model_copy(update={"excluded_users": ["u1", "u2"], "admitted_users": ["u3"], "screening_revision": 1})
    await store.tasks.replace(by_hand)
    stored = await store.tasks.get(t.id)
    assert stored == by_hand and stored is not None and stored.excluded_users == ["u1", "u2"]


async def test_concurrent_add_member_loses_nobody(store: Store) -> None:
    t = task()
    await store.tasks.add(t)
    members = [f"u{i}" for i in range(10)]
    await asyncio.gather(*(store.tasks.add_member(t.id, m) for m in members * 2))
    stored = await store.tasks.get(t.id)
    assert stored is not None and sorted(stored.members) == sorted(members)


# --------------------------------------------------------------------------------------- images
async def test_images_add_get_list(store: Store) -> None:
    t = task()
    await store.tasks.add(t)
    b, a, tut = image(t.id, "b.png"), image(t.id, "a.png"), image(t.id, "tutorial.png", tutorial=True)
    for img in (b, a, tut):
        assert await store.images.add(img)
    assert not await store.images.add(image(t.id, "a.png"))  # same name in the same task
    other = task()
    await store.tasks.add(other)
    assert await store.images.add(image(other.id, "a.png"))  # same name, other task
    assert await store.images.get(a.id) == a
    assert await store.images.get("missing") is None
    assert [i.name for i in await store.images.list_for_task(t.id)] == ["a.png", "b.png"]
    assert [i.name for i in await store.images.list_for_task(t.id, tutorial=True)] == ["tutorial.png"]
    assert [i.name for i in await store.images.list_for_task(t.id, tutorial=None)] == ["a.png", "b.png", "tutorial.png"]


async def test_lease_respects_replicates_and_expiry(store: Store) -> None:
    _, img = await stored_image(store, replicates=2)

    async def lease(image_id: str, user_id: str, now: datetime = NOW) -> bool:
        expires_at = now + timedelta(minutes=10)
        return await store.images.try_lease(image_id, user_id, replicates=2, now=now, expires_at=expires_at)

    assert await lease(img.id, "u1")
    assert await lease(img.id, "u1")  # renewing one's own lease
    assert await lease(img.id, "u2")
    assert not await lease(img.id, "u3")
    assert not await lease("missing", "u3")
    after = NOW + timedelta(minutes=10, seconds=1)
    assert await lease(img.id, "u3", after)  # the others expired
    stored = await store.images.get(img.id)
    assert stored is not None
    assert [lease.user_id for lease in stored.active_leases(after)] == ["u3"]


async def test_claim_slot(store: Store) -> None:
    _, img = await stored_image(store, replicates=2)
    assert await store.images.try_lease(img.id, "u1", replicates=2, now=NOW, expires_at=LATER)
    assert await store.images.try_lease(img.id, "u2", replicates=2, now=NOW, expires_at=LATER)
    assert not await store.images.claim_slot(img.id, "u3", replicates=2, now=NOW)  # no room left
    assert await store.images.claim_slot(img.id, "u1", replicates=2, now=NOW)  # holds a lease
    assert await store.images.claim_slot(img.id, "u1", replicates=2, now=NOW)  # a retry
    stored = await store.images.get(img.id)
    assert stored is not None
    assert stored.submitted_by == ["u1"]
    assert [lease.user_id for lease in stored.leases] == ["u2"]
    # never the same image twice to one user
    assert not await store.images.try_lease(img.id, "u1", replicates=2, now=NOW, expires_at=LATER)
    assert not await store.images.claim_slot("missing", "u1", replicates=2, now=NOW)


async def test_record_submitter_is_idempotent(store: Store) -> None:
    _, img = await stored_image(store)
    await store.images.record_submitter(img.id, "u1")
    await store.images.record_submitter(img.id, "u1")
    await store.images.record_submitter("missing", "u1")
    stored = await store.images.get(img.id)
    assert stored is not None and stored.submitted_by == ["u1"]


async def test_concurrent_leases_never_exceed_replicates(store: Store) -> None:
    _, img = await stored_image(store, replicates=3)
    users = [f"u{i}" for i in range(12)] * 2  # every user asks twice, all at once
    random.shuffle(users)
    results = await asyncio.gather(
        *(store.images.try_lease(img.id, u, replicates=3, now=NOW, expires_at=LATER) for u in users)
    )
    winners = {u for u, ok in zip(users, results, strict=True) if ok}
    assert len(winners) == 3
    stored = await store.images.get(img.id)
    assert stored is not None
    holders = [lease.user_id for lease in stored.active_leases(NOW)]
    assert sorted(holders) == sorted(winners)  # one lease per winner, nobody twice


async def test_concurrent_claims_never_exceed_replicates(store: Store) -> None:
    _, img = await stored_image(store, replicates=3)
    users = [f"u{i}" for i in range(10)] * 2
    random.shuffle(users)
    results = await asyncio.gather(*(store.images.claim_slot(img.id, u, replicates=3, now=NOW) for u in users))
    winners = {u for u, ok in zip(users, results, strict=True) if ok}
    assert len(winners) == 3
    stored = await store.images.get(img.id)
    assert stored is not None and sorted(stored.submitted_by) == sorted(winners)


async def test_concurrent_lease_then_claim_per_user(store: Store) -> None:
    """The annotator flow at once for many users: lease, then submit. Coverage stays at the target."""
    _, img = await stored_image(store, replicates=3)

    async def annotate(user_id: str) -> bool:
        if not await store.images.try_lease(img.id, user_id, replicates=3, now=NOW, expires_at=LATER):
            return False
        return await store.images.claim_slot(img.id, user_id, replicates=3, now=NOW)

    results = await asyncio.gather(*(annotate(f"u{i}") for i in range(10)))
    assert sum(results) == 3
    stored = await store.images.get(img.id)
    assert stored is not None and len(stored.submitted_by) == 3 and stored.active_leases(NOW) == []


# ---------------------------------------------------------------------------------- submissions
async def test_submissions_are_idempotent_by_client_id(store: Store) -> None:
    _, img = await stored_image(store)
    first = submission(img, "u1", "client-1")
    stored, created = await store.submissions.add(first)
    assert created and stored == first
    retry = first.model_copy(update={"shapes": []})
    stored, created = await store.submissions.add(retry)
    assert not created and stored == first  # the original is kept
    assert await store.submissions.get("client-1") == first
    assert await store.submissions.get("missing") is None


async def test_concurrent_duplicate_submissions_store_one(store: Store) -> None:
    _, img = await stored_image(store)
    results = await asyncio.gather(*(store.submissions.add(submission(img, "u1", "client-x")) for _ in range(10)))
    assert sum(created for _, created in results) == 1
    assert len({s.model_dump_json() for s, _ in results}) == 1
    assert len(await store.submissions.list_for_image(img.id)) == 1


async def test_one_submission_per_user_per_image_under_concurrency(store: Store) -> None:
    """Regression: a user racing fresh client ids for one image (two tabs, two annotate replicas) stored
    several submissions, more than the task's replicates; the store now refuses all but one."""
    _, img = await stored_image(store)
    attempts = [store.submissions.add(submission(img, "u1")) for _ in range(8)]
    results = await asyncio.gather(*attempts, return_exceptions=True)
    stored = [r for r in results if not isinstance(r, BaseException)]
    assert len(stored) == 1 and stored[0][1]
    assert all(isinstance(r, Conflict) for r in results if isinstance(r, BaseException))
    assert [s.user_id for s in await store.submissions.list_for_image(img.id)] == ["u1"]
    _, created = await store.submissions.add(submission(img, "u2"))
    assert created and len(await store.submissions.list_for_image(img.id)) == 2


async def test_submission_lookups_and_counts(store: Store) -> None:
    t, img_a = await stored_image(store)
    img_b = image(t.id, "b.png")
    await store.images.add(img_b)
    other_task, img_c = await stored_image(store)
    subs = [submission(img_a, "u1"), submission(img_a, "u2"), submission(img_b, "u1"), submission(img_c, "u1")]
    for s in subs:
        await store.submissions.add(s)
    assert {s.id for s in await store.submissions.list_for_image(img_a.id)} == {subs[0].id, subs[1].id}
    assert {s.id for s in await store.submissions.list_for_task(t.id)} == {s.id for s in subs[:3]}
    assert {s.id for s in await store.submissions.list_for_user("u1")} == {subs[0].id, subs[2].id, subs[3].id}
    assert await store.submissions.count_by_image(t.id) == {img_a.id: 2, img_b.id: 1}
    assert await store.submissions.count_by_image(other_task.id) == {img_c.id: 1}
    assert await store.submissions.count_by_image("missing") == {}


# ------------------------------------------------------------------------------------ consensus
async def test_consensus_save_if_newer(store: Store) -> None:
    t, img = await stored_image(store)
    assert await store.consensus.get(img.id) is None
    assert await store.consensus.save_if_newer(consensus(img, 2))
    assert not await store.consensus.save_if_newer(consensus(img, 2))
    assert not await store.consensus.save_if_newer(consensus(img, 1))
    newer = consensus(img, 3)
    assert await store.consensus.save_if_newer(newer)
    assert await store.consensus.get(img.id) == newer
    _, other = await stored_image(store)
    await store.consensus.save_if_newer(consensus(other, 1))
    assert [c.image_id for c in await store.consensus.list_for_task(t.id)] == [img.id]


async def test_a_reference_bumps_its_version_and_rescores_the_consensus(store: Store) -> None:
    t, img = await stored_image(store)
    assert await store.images.set_reference("missing", [], by="owner", at=datetime.now(UTC)) is None
    shapes = [Shape(type=Tool.POLYGON, points=[(1, 1), (5, 1), (3, 4)])]
    at = datetime.now(UTC)
    first = await store.images.set_reference(img.id, shapes, by="owner", at=at)
    assert first is not None and (first.reference_version, first.reference_by) == (1, "owner")
    second = await store.images.set_reference(img.id, shapes[:1], by="expert", at=at)
    assert second is not None and second.reference_version == 2
    stored = await store.images.get(img.id)
    assert stored is not None and stored.reference_shapes == shapes and stored.reference_version == 2
    assert stored.reference_by == "expert" and stored.submitted_by == img.submitted_by

    def scored(version: int, quality: float) -> Consensus:
        rater = RaterScore(user_id="ann", submission_id="s0", quality=quality, quality_basis="crowd", tp=1, fp=0, fn=0)
        return consensus(img, 2).model_copy(update={"reference_version": version, "raters": [rater]})

    assert await store.consensus.save_if_newer(scored(0, 0.5))
    assert not await store.consensus.save_if_newer(scored(0, 0.9))  # as many submissions, the same scoring
    assert await store.consensus.save_if_newer(scored(2, 0.8))  # scored against a newer reference
    assert not await store.consensus.save_if_newer(scored(1, 0.1))
    rescored = scored(2, 0.7).model_copy(update={"scoring": 1})  # by newer code
    assert await store.consensus.save_if_newer(rescored)
    assert not await store.consensus.save_if_newer(scored(2, 0.2))
    found = await store.consensus.get(img.id)
    assert found is not None and (found.reference_version, found.scoring) == (2, 1) and found.raters[0].quality == 0.7
    (tally,) = await store.counters.tallies_for_task(t.id)
    assert (tally.quality, tally.quality_images, tally.scored) == (0.7, 1, 1)  # replaced, not added


async def test_concurrent_consensus_keeps_the_newest(store: Store) -> None:
    _, img = await stored_image(store)
    counts = list(range(1, 13))
    random.shuffle(counts)
    await asyncio.gather(*(store.consensus.save_if_newer(consensus(img, n)) for n in counts))
    stored = await store.consensus.get(img.id)
    assert stored is not None and stored.submissions == 12


async def test_a_review_changes_a_submission_once_per_verdict(store: Store) -> None:
    _, img = await stored_image(store)
    stored, _ = await store.submissions.add(submission(img, "ann"))
    reject = Review(decision="reject", reason="blob", by="owner", at=NOW)
    assert await store.submissions.review("missing", reject, event("t", img.id)) == (None, False)
    reviews = (store.submissions.review(stored.id, reject, event("t", img.id)) for _ in range(8))
    outcomes = await asyncio.gather(*reviews)
    assert sum(changed for _, changed in outcomes) == 1
    found = await store.submissions.get(stored.id)
    assert found is not None and found.rejected and found.review is not None and found.review.revision == 1
    assert len(found.outbox) == 1 and all(s == found for s, _ in outcomes)
    accept = Review(decision="accept", by="owner", at=LATER)
    accepted, changed = await store.submissions.review(stored.id, accept, event("t", img.id))
    assert changed and accepted is not None and not accepted.rejected and accepted.review_revision == 2


async def test_a_rejected_rater_leaves_the_coverage_and_never_leases_again(store: Store) -> None:
    t, img = await stored_image(store, replicates=2)
    assert await store.images.claim_slot(img.id, "ann", replicates=2, now=NOW)
    assert await store.images.claim_slot(img.id, "bob", replicates=2, now=NOW)
    assert not await store.images.try_lease(img.id, "cy", replicates=2, now=NOW, expires_at=LATER)
    await asyncio.gather(*(store.images.set_rejected(img.id, "ann", rejected=True) for _ in range(6)))
    moved = await store.images.get(img.id)
    assert moved is not None and (moved.submitted_by, moved.rejected_by) == (["bob"], ["ann"])
    counters = await store.counters.task(t.id)
    assert counters is not None and counters.coverage == {1: 1}
    assert not await store.images.try_lease(img.id, "ann", replicates=2, now=NOW, expires_at=LATER)
    assert await store.images.try_lease(img.id, "cy", replicates=2, now=NOW, expires_at=LATER)
    await store.images.set_rejected(img.id, "ann", rejected=False)
    await store.images.set_rejected(img.id, "nobody", rejected=True)
    back = await store.images.get(img.id)
    assert back is not None and sorted(back.submitted_by) == ["ann", "bob"] and back.rejected_by == []
    counters = await store.counters.task(t.id)
    assert counters is not None and counters.coverage == {2: 1}


async def test_a_consensus_after_a_review_replaces_one_with_more_submissions(store: Store) -> None:
    _, img = await stored_image(store)
    assert await store.consensus.save_if_newer(consensus(img, 3))
    assert await store.consensus.save_if_newer(consensus(img, 2).model_copy(update={"reviews": 1}))
    assert not await store.consensus.save_if_newer(consensus(img, 3))  # from before the review
    found = await store.consensus.get(img.id)
    assert found is not None and (found.reviews, found.submissions) == (1, 2)


# ------------------------------------------------------------------------------ attempts, exports
async def test_attempts(store: Store) -> None:
    t, img = await stored_image(store)
    mine = QualificationAttempt(task_id=t.id, user_id="u1", image_id=img.id, shapes=SQUARE, metric="dice", score=0.9,
                                passed=True)  # fmt: skip
    theirs = mine.model_copy(update={"id": new_id(), "user_id": "u2"})
    await store.attempts.add(mine)
    await store.attempts.add(theirs)
    assert await store.attempts.list_for(t.id, "u1") == [mine]
    assert await store.attempts.list_for(t.id, "nobody") == []


async def test_exports_and_unfinished(store: Store) -> None:
    queued, running, done = (Export(task_id="t", requested_by="u", status=s) for s in ("queued", "running", "done"))
    for e in (queued, running, done):
        await store.exports.add(e)
    assert await store.exports.get(done.id) == done
    assert await store.exports.get("missing") is None
    assert {e.id for e in await store.exports.unfinished()} == {queued.id, running.id}
    finished = running.model_copy(update={"status": "done", "progress": 1.0, "archive_key": "exports/x.zip"})
    await store.exports.replace(finished)
    assert await store.exports.get(running.id) == finished
    assert [e.id for e in await store.exports.unfinished()] == [queued.id]


# --------------------------------------------------------------------------------------- outbox
async def test_outbox_pending_and_mark_published(store: Store) -> None:
    t = task()
    await store.tasks.add(t)
    img = image(t.id, events=2)
    await store.images.add(img)
    sub = submission(img, "u1", events=1)
    await store.submissions.add(sub)
    await store.submissions.add(submission(img, "u2"))  # nothing to publish
    pending = await store.outbox.pending()
    assert sorted((e.collection, e.document_id) for e in pending) == sorted(
        [("images", img.id), ("images", img.id), ("submissions", sub.id)]
    )
    assert {e.event.payload["event_id"] for e in pending} == {e.payload["event_id"] for e in [*img.outbox, *sub.outbox]}
    assert len(await store.outbox.pending(limit=1)) == 1
    first = next(e for e in pending if e.collection == "images")
    await store.outbox.mark_published(first)
    await store.outbox.mark_published(first)  # at least once: a second mark changes nothing
    left = await store.outbox.pending()
    assert len(left) == 2 and first.event not in [e.event for e in left]
    for entry in left:
        await store.outbox.mark_published(entry)
    assert await store.outbox.pending() == []
    stored = await store.images.get(img.id)
    assert stored is not None and stored.outbox == [] and stored.name == img.name


async def test_outbox_pending_by_source_is_not_hidden_by_another_backlog(store: Store) -> None:
    """Regression: each process relays only its own services' outboxes, but filtered the page of
    `pending()` after reading it, so a backlog of ingest events past the page limit hid every
    submission event from the annotate process."""
    t = task()
    await store.tasks.add(t)
    images = [image(t.id, f"{n}.png", events=1) for n in range(5)]
    for img in images:
        await store.images.add(img)
    sub = submission(images[0], "u1", events=1)
    await store.submissions.add(sub)
    only_submissions = await store.outbox.pending(limit=3, sources={"submissions"})
    assert [(e.collection, e.document_id) for e in only_submissions] == [("submissions", sub.id)]
    assert {e.collection for e in await store.outbox.pending(limit=10, sources={"images"})} == {"images"}
    assert await store.outbox.pending(sources=set()) == []


async def test_outbox_of_consensus_and_exports(store: Store) -> None:
    _, img = await stored_image(store)
    result = consensus(img, 1).model_copy(update={"outbox": [event("crowdseg.consensus.updated.v1", img.id)]})
    await store.consensus.save_if_newer(result)
    export = Export(task_id=img.task_id, requested_by="u", outbox=[event("crowdseg.export.requested.v1", "t")])
    await store.exports.add(export)
    pending = await store.outbox.pending()
    assert sorted(e.collection for e in pending) == ["consensus", "exports"]
    await asyncio.gather(*(store.outbox.mark_published(e) for e in pending))
    assert await store.outbox.pending() == []
    assert (await store.consensus.get(img.id)) == result.model_copy(update={"outbox": []})


# ----------------------------------------------------------------------------------- lifecycle
async def test_ping(store: Store) -> None:
    await store.ping()


async def test_a_reference_s_event_waits_in_the_image_s_outbox(store: Store) -> None:
    """Gold in the stream (issue 10): image.referenced is published from the outbox of the change."""
    _, img = await stored_image(store)
    shapes = [Shape(type=Tool.POLYGON, points=[(1, 1), (5, 1), (3, 4)])]
    referenced = event("crowdseg.image.referenced.v1", img.task_id)
    changed = await store.images.set_reference(img.id, shapes, by="owner", at=datetime.now(UTC), event=referenced)
    assert changed is not None and changed.outbox == [referenced]
    (pending,) = [e for e in await store.outbox.pending() if e.document_id == img.id]
    assert pending.event == referenced
    await store.outbox.mark_published(pending)
    stored = await store.images.get(img.id)
    assert stored is not None and stored.outbox == [] and stored.reference_shapes == shapes


async def test_a_gold_answer_s_quality_counts_in_its_rater_s_tally_on_insert(store: Store) -> None:
    """Gold answers never enter a consensus: their quality reaches the tally with the submission."""
    t, img = await stored_image(store)
    gold = submission(img, "ann").model_copy(update={"gold": GoldScore(metric=Metric.DICE, score=0.8, quality=0.8)})
    await store.submissions.add(gold)
    await store.submissions.add(submission(img, "bob"))
    tallies = {tally.user_id: tally for tally in await store.counters.tallies_for_task(t.id)}
    assert (tallies["ann"].quality, tallies["ann"].quality_images, tallies["ann"].submissions) == (0.8, 1, 1)
    assert (tallies["bob"].quality, tallies["bob"].quality_images) == (None, 0)
    await store.counters.rebuild(t.id)
    rebuilt = {tally.user_id: tally for tally in await store.counters.tallies_for_task(t.id)}
    assert rebuilt["ann"].quality == pytest.approx(0.8) and rebuilt["ann"].quality_images == 1
