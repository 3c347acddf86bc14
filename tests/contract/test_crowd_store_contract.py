"""The store's study links, link workers, invitations and member removal, on every store adapter
(conftest.py): the unique worker key under racing first visits, revocation, acceptance and paging."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from crowdseg.domain import Invitation, LinkKind, LinkWorker, StudyLink, Task, Tool, new_id
from crowdseg.ports import Store

pytestmark = pytest.mark.contract

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def worker(link: StudyLink, external_id: str, at: datetime = NOW) -> LinkWorker:
    return LinkWorker(
        id=LinkWorker.key(link.id, external_id),
        link_id=link.id,
        task_id=link.task_id,
        kind=link.kind,
        external_id=external_id,
        user_id=new_id(),
        created_at=at,
    )


async def test_links_add_get_revoke_and_page(store: Store) -> None:
    links = [
        StudyLink(task_id="t1", created_by="o", kind=LinkKind.PROLIFIC, quota=3, created_at=NOW + timedelta(seconds=n))
        for n in range(5)
    ]
    for link in reversed(links):
        await store.links.add(link)
    await store.links.add(StudyLink(task_id="t2", created_by="o", kind=LinkKind.GENERIC, quota=1))
    assert await store.links.get(links[0].id) == links[0]
    assert await store.links.get("missing") is None
    first = await store.links.page_for_task("t1", limit=2)
    assert [link.id for link in first.items] == [links[0].id, links[1].id] and first.more
    rest = await store.links.page_for_task("t1", limit=10, after=first.next_after)
    assert [link.id for link in rest.items] == [link.id for link in links[2:]] and not rest.more
    revoked = await store.links.revoke(links[1].id, NOW)
    assert revoked is not None and revoked.revoked_at == NOW
    again = await store.links.revoke(links[1].id, NOW + timedelta(hours=1))
    assert again is not None and again.revoked_at == NOW  # the first revocation's time stays
    assert await store.links.revoke("missing", NOW) is None


async def test_racing_first_visits_store_one_worker(store: Store) -> None:
    link = StudyLink(task_id="t1", created_by="o", kind=LinkKind.GENERIC, quota=1)
    await store.links.add(link)
    results = await asyncio.gather(*(store.link_workers.add(worker(link, "w1")) for _ in range(20)))
    assert sum(created for _, created in results) == 1
    assert len({stored.user_id for stored, _ in results}) == 1
    stored, created = await store.link_workers.add(worker(link, "w1"))
    assert not created and stored.user_id == results[0][0].user_id
    await store.link_workers.add(worker(link, "w2", NOW + timedelta(seconds=1)))
    page = await store.link_workers.page_for_task("t1", limit=10)
    assert [w.external_id for w in page.items] == ["w1", "w2"]
    assert (await store.link_workers.page_for_task("other", limit=10)).items == []


async def test_invitations_revoke_and_concurrent_acceptances(store: Store) -> None:
    invitation = Invitation(task_id="t1", created_by="o", expires_at=NOW + timedelta(hours=1), email="a@example.org")
    await store.invitations.add(invitation)
    assert await store.invitations.get(invitation.id) == invitation
    users = [new_id() for _ in range(8)]
    await asyncio.gather(*(store.invitations.accepted(invitation.id, user) for user in users + users))
    stored = await store.invitations.get(invitation.id)
    assert stored is not None and sorted(stored.accepted_by) == sorted(users)  # none lost, none twice
    revoked = await store.invitations.revoke(invitation.id, NOW)
    assert revoked is not None and revoked.revoked_at == NOW
    assert [i.id for i in (await store.invitations.page_for_task("t1", limit=5)).items] == [invitation.id]
    assert await store.invitations.revoke("missing", NOW) is None


async def test_remove_member(store: Store) -> None:
    task = Task(owner_id="o", title="t", tool=Tool.POLYGON)
    await store.tasks.add(task)
    for user in ("u1", "u2", "u3"):
        await store.tasks.add_member(task.id, user)
    assert await store.tasks.remove_member(task.id, "u2")
    assert not await store.tasks.remove_member(task.id, "u2")
    assert not await store.tasks.remove_member("missing", "u1")
    stored = await store.tasks.get(task.id)
    assert stored is not None and stored.members == ["u1", "u3"]
