"""The selection structure gives the same images, in the same order, as the brute-force rules.

Issue 8: `next` read and sorted every image of the task on every call (3 s at 10 000 images); the
structure that replaced it must keep the rules exactly. `domain.candidates` stays the reference.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from crowdseg.domain import Image, Lease, Order, Task, Tool
from crowdseg.services.assign.domain import candidates
from crowdseg.services.assign.selection import TaskSelection, xor_order
from hypothesis import given, settings
from hypothesis import strategies as st
from sortedcontainers import SortedList

from tests.unit.test_assign_policy import image as policy_image

pytestmark = pytest.mark.unit

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
USERS = [f"user-{n}" for n in range(5)]


def new_image(number: int) -> Image:
    """Image ``number``, named so that names run in another order than the numbers (37 is a unit mod 101)."""
    return policy_image(f"{(number * 37) % 101:03d}.png")


class World:
    """The store's side, by the same rules as the adapters' try_lease and claim_slot."""

    def __init__(self) -> None:
        self.images: dict[str, Image] = {}
        self.now = START

    def try_lease(self, image: Image, user: str, replicates: int, seconds: int) -> bool:
        if user in image.submitted_by:
            return False
        others = [lease for lease in image.active_leases(self.now) if lease.user_id != user]
        if len(image.submitted_by) + len(others) >= replicates:
            return False
        image.leases = [*others, Lease(user_id=user, expires_at=self.now + timedelta(seconds=seconds))]
        return True

    def claim_slot(self, image: Image, user: str, replicates: int) -> bool:
        if user in image.submitted_by:
            return False
        active = image.active_leases(self.now)
        holds = any(lease.user_id == user for lease in active)
        others = [lease for lease in active if lease.user_id != user]
        if not holds and len(image.submitted_by) + len(others) >= replicates:
            return False
        image.submitted_by = [*image.submitted_by, user]
        image.leases = others
        return True


operation = st.one_of(
    st.tuples(st.just("ingest"), st.integers(0, 60)),
    st.tuples(st.just("lease"), st.sampled_from(USERS), st.integers(0, 60), st.integers(1, 30)),
    st.tuples(st.just("submit"), st.sampled_from(USERS), st.integers(0, 60), st.integers(0, 0)),
    st.tuples(st.just("wait"), st.integers(1, 40)),
    st.tuples(st.just("resync"), st.integers(0, 60)),
)


@settings(max_examples=300, deadline=None)
@given(
    operations=st.lists(operation, max_size=80),
    replicates=st.integers(1, 4),
    order=st.sampled_from(list(Order)),
    unseen_first=st.booleans(),
)
def test_selection_matches_the_brute_force_rules(
    operations: list[tuple[object, ...]], replicates: int, order: Order, unseen_first: bool
) -> None:
    task = Task(
        owner_id="o", title="t", tool=Tool.CONTOUR, replicates=replicates, order=order, unseen_first=unseen_first
    )
    world, selection = World(), TaskSelection("task")
    for op in operations:
        kind = op[0]
        if kind == "ingest":
            image = new_image(int(op[1]))  # type: ignore[call-overload]
            if image.id not in world.images:
                world.images[image.id] = image
                selection.add(image.id, image.name, image.width, image.height)
        elif kind == "wait":
            world.now += timedelta(seconds=int(op[1]))  # type: ignore[call-overload]
        elif kind == "resync":
            image_id = new_image(int(op[1])).id  # type: ignore[call-overload]
            if image_id in world.images:
                selection.sync(world.images[image_id], world.now)
        else:
            user, number, seconds = str(op[1]), int(op[2]), int(op[3])  # type: ignore[call-overload]
            image_or_none = world.images.get(new_image(number).id)
            if image_or_none is None:
                continue
            if kind == "lease" and world.try_lease(image_or_none, user, replicates, seconds):
                selection.leased(image_or_none.id, user, world.now + timedelta(seconds=seconds))
            elif kind == "submit" and world.claim_slot(image_or_none, user, replicates):
                selection.submitted(image_or_none.id, user)
        for user in USERS:
            expected = [image.id for image in candidates(task, list(world.images.values()), user, world.now)]
            got = list(
                selection.candidates(
                    user, replicates=replicates, order=order, unseen_first=unseen_first, now=world.now
                )
            )
            assert got == expected


@given(ranks=st.lists(st.integers(0, 2**64 - 1), unique=True, max_size=200), key=st.integers(0, 2**64 - 1))
def test_xor_order_walks_ranks_in_increasing_xor_order(ranks: list[int], key: int) -> None:
    items = SortedList((rank, f"n{rank}", f"i{rank}") for rank in ranks)
    assert [item[0] for item in xor_order(items, key)] == sorted(ranks, key=lambda rank: rank ^ key)


def test_a_stale_structure_is_corrected_by_the_stores_view() -> None:
    """A lease taken by another replica reaches this one only through the store (sync)."""
    world, selection = World(), TaskSelection("task")
    image = new_image(1)
    world.images[image.id] = image
    selection.add(image.id, image.name, 16, 16)
    assert world.try_lease(image, "elsewhere", replicates=1, seconds=60)
    assert list(selection.candidates("me", replicates=1, order=Order.NAME_ASC, unseen_first=True, now=world.now)) == [
        image.id
    ]
    selection.sync(image, world.now)
    assert list(selection.candidates("me", replicates=1, order=Order.NAME_ASC, unseen_first=True, now=world.now)) == []
    world.now += timedelta(seconds=61)
    assert list(selection.candidates("me", replicates=1, order=Order.NAME_ASC, unseen_first=True, now=world.now)) == [
        image.id
    ]
