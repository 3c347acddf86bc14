"""Leasing the next image to an annotator. Knows nothing about HTTP or Kafka."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from crowdseg.access import visible_task
from crowdseg.domain import GOLD_SLOTS, Task, TaskStatus, User, utcnow
from crowdseg.errors import Conflict, Unavailable
from crowdseg.ports import Store
from crowdseg.qualification import ensure_qualified
from crowdseg.services.assign import gold
from crowdseg.services.assign.crowds import LinkProgress, quota_state
from crowdseg.services.assign.selection import TaskSelection

log = logging.getLogger(__name__)
Change = Callable[[TaskSelection], None]

BUILD_PAGE = 2000
# Each refused lease corrects the structure for one image; this many in a row means the store is
# being changed faster than we can follow (or is misbehaving), and the caller should retry.
MAX_LEASE_TRIES = 64
# An exhausted selection is checked against the store's image count (images whose event never reached
# this process) at most this often per task, and rebuilt only when images are missing.
REFRESH_ON_EXHAUSTION_SECONDS = 60.0


@dataclass(frozen=True)
class Progress:
    """How far the caller is in the task: images submitted before this one, of ``quota`` (a study
    link's quota, or, with no link, every image of the task: one person annotates each image once)."""

    link_id: str | None
    images: int
    quota: int


@dataclass(frozen=True)
class Assignment:
    image_id: str
    name: str
    width: int
    height: int
    lease_expires_at: datetime
    progress: Progress | None = None
    frames: int = 1
    window: tuple[float, float] | None = None


class Selections:
    """This process's selection structure per task: built from the store on first use, then kept
    current by :meth:`image_added`, :meth:`submitted` and the leases this process takes."""

    def __init__(
        self, store: Store, *, refresh_seconds: float = REFRESH_ON_EXHAUSTION_SECONDS, build_page: int = BUILD_PAGE
    ) -> None:
        self._store = store
        self._build_page = build_page
        self._refresh_seconds = refresh_seconds
        self._ready: dict[str, TaskSelection] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._early: dict[str, list[Change]] = {}  # events that came while the task was being built
        self._built_at: dict[str, float] = {}
        # Set once the events that keep the structures current are being consumed: a structure built
        # before then could miss an image ingested in between.
        self.listening = asyncio.Event()

    async def for_task(self, task_id: str) -> TaskSelection:
        selection = self._ready.get(task_id)
        if selection is not None:
            return selection
        async with self._locks.setdefault(task_id, asyncio.Lock()):
            await self.listening.wait()
            selection = self._ready.get(task_id)
            return selection if selection is not None else await self._build(task_id)

    async def _build(self, task_id: str) -> TaskSelection:
        started = time.perf_counter()
        selection = TaskSelection(task_id)
        self._early[task_id] = []
        try:
            now = utcnow()
            after = None
            while True:  # by pages, so a large task's build leaves the event loop to other requests between pages
                page = await self._store.images.page_for_task(task_id, limit=self._build_page, after=after)
                for image in page.items:
                    selection.sync(image, now)
                if not page.more:
                    break
                after = page.keys[-1]
                await asyncio.sleep(0)
        finally:
            early = self._early.pop(task_id)
        for change in early:
            change(selection)
        self._ready[task_id] = selection
        self._built_at[task_id] = time.monotonic()
        log.info("selection of task %s: %d images in %.2f s", task_id, len(selection), time.perf_counter() - started)
        return selection

    def image_added(
        self,
        task_id: str,
        image_id: str,
        name: str,
        width: int,
        height: int,
        frames: int = 1,
        window: tuple[float, float] | None = None,
    ) -> None:
        self._change(task_id, lambda selection: selection.add(image_id, name, width, height, frames, window))

    def submitted(self, task_id: str, image_id: str, user_id: str) -> None:
        self._change(task_id, lambda selection: selection.submitted(image_id, user_id))

    def reviewed(self, task_id: str, image_id: str, user_id: str, *, rejected: bool) -> None:
        self._change(task_id, lambda selection: selection.reviewed(image_id, user_id, rejected=rejected))

    def certain(self, task_id: str, image_id: str, certainty: float | None, *, retired: bool) -> None:
        self._change(task_id, lambda selection: selection.certain(image_id, certainty, retired=retired))

    def referenced(self, task_id: str, image_id: str, *, gold: bool) -> None:
        self._change(task_id, lambda selection: selection.set_gold(image_id, gold))

    def _change(self, task_id: str, change: Change) -> None:
        selection = self._ready.get(task_id)
        if selection is not None:
            change(selection)
        elif task_id in self._early:
            self._early[task_id].append(change)
        # otherwise the task is not in use here yet: its build will read the store

    def may_refresh(self, task_id: str) -> bool:
        return time.monotonic() - self._built_at.get(task_id, 0.0) >= self._refresh_seconds

    def drop(self, task_id: str) -> None:
        """Forget a task's structure; the next use rebuilds it from the store."""
        self._ready.pop(task_id, None)


async def next_image(
    store: Store,
    selections: Selections,
    user: User,
    task_id: str,
    now: datetime,
    skip: Collection[str] = (),
) -> Assignment | None:
    """Lease the best open image to the user; None when nothing is left for them. ``skip``: images
    the user passed over without submitting; they are not answered, and the user's leases on them are
    given back so others may have them (the user may get them again on a later call without them)."""
    task = await visible_task(store, task_id, user)
    if task.status is not TaskStatus.OPEN:
        raise Conflict(f"the task is {task.status.value}, not open")
    await ensure_qualified(store, task, user)
    link_progress = await quota_state(store, user)
    if link_progress is not None and link_progress.done:  # a study link's worker past the quota: done
        return None
    selection = await selections.for_task(task.id)
    await _give_back(store, selection, user, task, skip, now)
    # read once: the gold schedule and the progress both count the caller's submissions
    submitted = await _submitted(store, user, task) if task.gold_rate > 0 or link_progress is None else 0
    assignment = await _lease_gold(store, selection, user, task, now, skip, submitted)
    if assignment is None:
        assignment = await _lease_next(store, selection, user, task, now, skip)
    if assignment is None and selections.may_refresh(task.id) and await _misses_images(store, selection):
        selections.drop(task.id)
        assignment = await _lease_next(store, await selections.for_task(task.id), user, task, now, skip)
    if assignment is None:
        return None
    return replace(assignment, progress=await _progress(store, task, selection, link_progress, submitted))


async def _submitted(store: Store, user: User, task: Task) -> int:
    """The caller's submissions in the task, from the store's counters (kept in the operation that
    stores a submission, so never a step behind)."""
    tally = next((t for t in await store.counters.tallies_for_user(user.id) if t.task_id == task.id), None)
    return tally.submissions if tally is not None else 0


async def _progress(
    store: Store, task: Task, selection: TaskSelection, link_progress: LinkProgress | None, submitted: int
) -> Progress:
    if link_progress is not None:
        return Progress(link_progress.link.id, link_progress.images, link_progress.link.quota)
    counters = await store.counters.task(task.id)
    images = counters.images if counters is not None else len(selection)
    return Progress(None, submitted, images)


async def _give_back(
    store: Store, selection: TaskSelection, user: User, task: Task, skip: Collection[str], now: datetime
) -> None:
    """End the user's own unexpired leases on skipped images (a lease that ends now is no lease)."""
    for image_id in skip:
        if selection.holds(image_id, user.id, now) and await store.images.try_lease(
            image_id, user.id, replicates=task.replicates, now=now, expires_at=now
        ):
            selection.leased(image_id, user.id, now)


async def _misses_images(store: Store, selection: TaskSelection) -> bool:
    """Whether the store counts more images than the structure holds (an event that never came)."""
    counters = await store.counters.task(selection.task_id)
    return counters is None or counters.images > len(selection)


async def _lease_next(
    store: Store, selection: TaskSelection, user: User, task: Task, now: datetime, skip: Collection[str] = ()
) -> Assignment | None:
    expires_at = now + timedelta(seconds=task.lease_seconds)
    selection.target(task.adaptive_confidence)
    for _ in range(MAX_LEASE_TRIES):
        candidates = selection.candidates(
            user.id, replicates=task.replicates, order=task.order, unseen_first=task.unseen_first, now=now
        )
        withheld = selection.gold_ids if task.gold_rate > 0 else ()  # gold is served by _lease_gold only
        image_id = next((c for c in candidates if c not in skip and c not in withheld), None)
        candidates.close()
        if image_id is None:
            return None
        entry = selection.entry(image_id)
        assert entry is not None
        # Taken here before the store answers, so concurrent requests of this process spread out.
        selection.leased(image_id, user.id, expires_at)
        if await store.images.try_lease(image_id, user.id, replicates=task.replicates, now=now, expires_at=expires_at):
            return Assignment(
                image_id, entry.name, entry.width, entry.height, expires_at, frames=entry.frames, window=entry.window
            )
        image = await store.images.get(image_id)
        if image is None or image.task_id != task.id or image.tutorial:
            selection.forget(image_id)
        else:
            selection.sync(image, now)
    raise Unavailable("the task's images are changing faster than they can be leased; retry")


async def _lease_gold(
    store: Store,
    selection: TaskSelection,
    user: User,
    task: Task,
    now: datetime,
    skip: Collection[str],
    submitted: int,
) -> Assignment | None:
    """A gold image, when the task's schedule (crowdseg.services.assign.gold) draws one for the user's
    count and one is left for them; None otherwise. Costs nothing when the task serves no gold."""
    if task.gold_rate <= 0 or not selection.gold_ids:
        return None
    if not gold.serves_gold(task.gold_rate, task.id, user.id, submitted):
        return None
    expires_at = now + timedelta(seconds=task.lease_seconds)
    refused: set[str] = set()
    for _ in range(MAX_LEASE_TRIES):
        candidates = selection.gold_candidates(user.id)
        image_id = next((c for c in candidates if c not in skip and c not in refused), None)
        candidates.close()
        entry = None if image_id is None else selection.entry(image_id)
        if image_id is None or entry is None:
            return None
        selection.leased(image_id, user.id, expires_at)
        if await store.images.try_lease(image_id, user.id, replicates=GOLD_SLOTS, now=now, expires_at=expires_at):
            return Assignment(image_id, entry.name, entry.width, entry.height, expires_at)
        refused.add(image_id)
        image = await store.images.get(image_id)
        if image is None or image.task_id != task.id:
            selection.forget(image_id)
        else:
            selection.sync(image, now)
    return None
