"""Adaptive replicates in the selection structure: retired images are no one's and contested ones
come first, exactly as the brute-force rules (``domain.candidates``) say."""

from __future__ import annotations

from datetime import timedelta

import pytest
from crowdseg.consensus import retires
from crowdseg.domain import Image, Order, Task, Tool
from crowdseg.services.assign.domain import candidates
from crowdseg.services.assign.selection import TaskSelection
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.unit.test_assign_selection import USERS, World, new_image

pytestmark = pytest.mark.unit

CERTAINTIES = (None, 0.2, 0.6, 0.85, 0.95, 1.0)


class AdaptiveWorld(World):
    """The store's side: a retired image is leased and claimed by no one (the adapters' rule)."""

    def try_lease(self, image: Image, user: str, replicates: int, seconds: int) -> bool:
        return not image.retired and super().try_lease(image, user, replicates, seconds)

    def claim_slot(self, image: Image, user: str, replicates: int) -> bool:
        holds = any(lease.user_id == user for lease in image.active_leases(self.now))
        return (holds or not image.retired) and super().claim_slot(image, user, replicates)


operation = st.one_of(
    st.tuples(st.just("ingest"), st.integers(0, 30)),
    st.tuples(st.just("lease"), st.sampled_from(USERS), st.integers(0, 30), st.integers(1, 30)),
    st.tuples(st.just("submit"), st.sampled_from(USERS), st.integers(0, 30), st.integers(0, 0)),
    st.tuples(st.just("consensus"), st.integers(0, 30), st.sampled_from(CERTAINTIES)),
    st.tuples(st.just("confidence"), st.sampled_from((0.5, 0.9))),
    st.tuples(st.just("wait"), st.integers(1, 40)),
    st.tuples(st.just("resync"), st.integers(0, 30)),
)


@settings(max_examples=300, deadline=None)
@given(
    operations=st.lists(operation, max_size=80),
    replicates=st.integers(1, 5),
    min_share=st.floats(0, 1),
    order=st.sampled_from(list(Order)),
    unseen_first=st.booleans(),
)
def test_adaptive_selection_matches_the_brute_force_rules(
    operations: list[tuple[object, ...]], replicates: int, min_share: float, order: Order, unseen_first: bool
) -> None:
    task = Task(
        owner_id="o",
        title="t",
        tool=Tool.CONTOUR,
        replicates=replicates,
        min_replicates=max(1, round(min_share * replicates)),
        order=order,
        unseen_first=unseen_first,
    )
    world, selection = AdaptiveWorld(), TaskSelection("task")
    for op in operations:
        kind = op[0]
        if kind == "ingest":
            image = new_image(int(op[1]))  # type: ignore[call-overload]
            if image.id not in world.images:
                world.images[image.id] = image
                selection.add(image.id, image.name, image.width, image.height)
        elif kind == "wait":
            world.now += timedelta(seconds=int(op[1]))  # type: ignore[call-overload]
        elif kind == "confidence":  # a PATCH of the task
            task = task.model_copy(update={"confidence": op[1]})
        elif kind in ("resync", "consensus"):
            found = world.images.get(new_image(int(op[1])).id)  # type: ignore[call-overload]
            if found is None:
                continue
            if kind == "resync":
                selection.sync(found, world.now)
                continue
            certainty = op[2]
            assert certainty is None or isinstance(certainty, float)
            found.certainty = certainty  # the consensus worker's rule, as of the task's settings then
            found.retired = task.adaptive_confidence is not None and retires(
                certainty, len(found.submitted_by), min_replicates=task.retire_after, confidence=task.confidence
            )
            selection.certain(found.id, found.certainty, retired=found.retired)
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
            selection.target(task.adaptive_confidence)
            got = list(
                selection.candidates(user, replicates=replicates, order=order, unseen_first=unseen_first, now=world.now)
            )
            assert got == expected


def test_a_retired_image_leaves_the_selection_and_a_contested_one_comes_first() -> None:
    task = Task(owner_id="o", title="t", tool=Tool.CONTOUR, replicates=5, min_replicates=2, confidence=0.9)
    selection = TaskSelection("task")
    selection.target(task.adaptive_confidence)
    for image in (new_image(n) for n in (1, 2, 3)):
        selection.add(image.id, image.name, 16, 16)

    def ids() -> list[str]:
        return list(selection.candidates("me", replicates=5, order=Order.NAME_ASC, unseen_first=True, now=World().now))

    by_name = ids()
    selection.certain(by_name[0], 0.99, retired=True)
    selection.certain(by_name[2], 0.4, retired=False)
    assert ids() == [by_name[2], by_name[1]]
    selection.certain(by_name[0], 0.5, retired=False)  # a rejected submission took it below again
    assert ids() == [by_name[0], by_name[2], by_name[1]]
