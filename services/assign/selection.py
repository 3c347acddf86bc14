"""The assign service's selection structure: which image a user gets next, without reading the task.

Like Zooniverse's designator, ``next`` answers from a structure per task that is built from the store
once and kept current by events (``image.ingested``, ``submission.accepted``) and by this process's own
leases; the store's atomic lease stays the arbiter. A candidate that the store refuses (another
replica leased it, a submission the events have not brought yet) is re-read from the store and the
search starts again, so a stale structure costs a round trip, never a wrong answer.

Images live in buckets by coverage (submissions plus unexpired leases), each bucket sorted twice:
by name and by a 64-bit rank. The per-user random order is the rank XOR a per-user key, walked in
increasing order by splitting the sorted ranks on their bits (a binary trie over a sorted list), so
the first candidate costs O(64 log n) whatever the task's size. The rules are those of
:func:`crowdseg.services.assign.domain.candidates`, which the unit tests keep as the reference.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from crowdseg.domain import Image, Order, is_gold_image
from crowdseg.services.assign.domain import image_key, user_key
from sortedcontainers import SortedList

# Small ranges are sorted directly rather than split further: cheaper than more bisections.
_DIRECT_SORT = 16


@dataclass
class Entry:
    """What selection needs to know of one image."""

    image_id: str
    name: str
    width: int
    height: int
    rank: int
    frames: int = 1
    window: tuple[float, float] | None = None
    submitted: set[str] = field(default_factory=set)
    rejected: set[str] = field(default_factory=set)  # done by them, but not counted: the image needs one more
    leases: dict[str, datetime] = field(default_factory=dict)
    level: int = -1  # the bucket it sits in; -1 before it is placed

    def coverage(self) -> int:
        return len(self.submitted) + len(self.leases)


class TaskSelection:
    """The open images of one task, by coverage, in every order the task may use."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self._entries: dict[str, Entry] = {}
        self._by_name: dict[int, SortedList] = {}
        self._by_rank: dict[int, SortedList] = {}
        self._done: dict[str, set[str]] = {}  # user → images they submitted
        self._held: dict[str, set[str]] = {}  # user → images they hold a lease on
        self._expiries: list[tuple[datetime, str, str]] = []  # (expires_at, image_id, user_id)
        self._gold: SortedList = SortedList()  # (rank, name, image_id) of the images with a reference
        self.gold_ids: set[str] = set()
        self._gold_early: set[str] = set()  # referenced before their image.ingested came

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._entries

    # ------------------------------------------------------------------ keeping it current
    def add(
        self,
        image_id: str,
        name: str,
        width: int,
        height: int,
        frames: int = 1,
        window: tuple[float, float] | None = None,
    ) -> None:
        """A new image of the task (idempotent: a known image keeps its state)."""
        if image_id not in self._entries:
            entry = Entry(
                image_id=image_id,
                name=name,
                width=width,
                height=height,
                rank=image_key(image_id),
                frames=frames,
                window=window,
            )
            self._entries[image_id] = entry
            self._place(entry)
            self.set_gold(image_id, image_id in self._gold_early)

    def entry(self, image_id: str) -> Entry | None:
        return self._entries.get(image_id)

    def forget(self, image_id: str) -> None:
        """An image the store no longer has."""
        self.set_gold(image_id, False)
        entry = self._entries.pop(image_id, None)
        if entry is not None and entry.level >= 0:
            self._by_name[entry.level].remove((entry.name, entry.image_id))
            self._by_rank[entry.level].remove((entry.rank, entry.name, entry.image_id))

    def sync(self, image: Image, now: datetime) -> None:
        """Take the store's view of an image (after the store refused a lease, or on build)."""
        entry = self._entries.get(image.id)
        if entry is None:
            entry = Entry(
                image_id=image.id,
                name=image.name,
                width=image.width,
                height=image.height,
                rank=image_key(image.id),
                frames=image.frames,
                window=image.window,
            )
            self._entries[image.id] = entry
        for user_id in entry.submitted - set(image.submitted_by):
            self._done.get(user_id, set()).discard(image.id)
        for user_id in entry.leases:
            self._held.get(user_id, set()).discard(image.id)
        entry.submitted = set(image.submitted_by)
        entry.rejected = set(image.rejected_by)
        entry.leases = {}
        for user_id in entry.submitted | entry.rejected:
            self._done.setdefault(user_id, set()).add(image.id)
        for lease in image.active_leases(now):
            if lease.user_id not in entry.submitted:
                self._set_lease(entry, lease.user_id, lease.expires_at)
        self._place(entry)
        self.set_gold(image.id, is_gold_image(image))

    def leased(self, image_id: str, user_id: str, expires_at: datetime) -> None:
        entry = self._entries.get(image_id)
        if entry is not None and user_id not in entry.submitted:
            self._set_lease(entry, user_id, expires_at)
            self._place(entry)

    def holds(self, image_id: str, user_id: str, now: datetime) -> bool:
        """Whether the user holds an unexpired lease on the image (as far as this process knows)."""
        entry = self._entries.get(image_id)
        expires_at = None if entry is None else entry.leases.get(user_id)
        return expires_at is not None and expires_at > now

    def submitted(self, image_id: str, user_id: str) -> None:
        entry = self._entries.get(image_id)
        if entry is None or user_id in entry.submitted:
            return
        entry.submitted.add(user_id)
        self._done.setdefault(user_id, set()).add(image_id)
        if entry.leases.pop(user_id, None) is not None:
            self._held.get(user_id, set()).discard(image_id)
        self._place(entry)

    def reviewed(self, image_id: str, user_id: str, *, rejected: bool) -> None:
        """A submission of the image was rejected (its slot opens for someone else) or accepted again."""
        entry = self._entries.get(image_id)
        if entry is None:
            return
        (entry.submitted.discard if rejected else entry.rejected.discard)(user_id)
        (entry.rejected.add if rejected else entry.submitted.add)(user_id)
        self._done.setdefault(user_id, set()).add(image_id)
        self._place(entry)

    def expire(self, now: datetime) -> None:
        """Drop the leases that ran out; their images go back to a less covered bucket."""
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, image_id, user_id = heapq.heappop(self._expiries)
            entry = self._entries.get(image_id)
            if entry is not None and entry.leases.get(user_id) == expires_at:
                del entry.leases[user_id]
                self._held.get(user_id, set()).discard(image_id)
                self._place(entry)

    # ------------------------------------------------------------------ gold (crowdseg.services.assign.gold)
    def set_gold(self, image_id: str, gold: bool) -> None:
        """The image has (or no longer has) an expert reference it can be served as gold with."""
        entry = self._entries.get(image_id)
        if entry is None:  # the two topics are not ordered: its image.ingested may come later
            (self._gold_early.add if gold else self._gold_early.discard)(image_id)
            return
        self._gold_early.discard(image_id)
        if gold != (image_id in self.gold_ids):
            (self.gold_ids.add if gold else self.gold_ids.discard)(image_id)
            (self._gold.add if gold else self._gold.remove)((entry.rank, entry.name, image_id))

    def gold_candidates(self, user_id: str) -> Generator[str, None, None]:
        """The gold images the user has not answered, in their own random order; O(log g) each."""
        done = self._done.get(user_id, set())
        for _, _, image_id in xor_order(self._gold, user_key(user_id)):
            if image_id not in done:
                yield image_id

    def _set_lease(self, entry: Entry, user_id: str, expires_at: datetime) -> None:
        entry.leases[user_id] = expires_at
        self._held.setdefault(user_id, set()).add(entry.image_id)
        heapq.heappush(self._expiries, (expires_at, entry.image_id, user_id))

    def _place(self, entry: Entry) -> None:
        level = entry.coverage()
        if level == entry.level:
            return
        if entry.level >= 0:
            self._by_name[entry.level].remove((entry.name, entry.image_id))
            self._by_rank[entry.level].remove((entry.rank, entry.name, entry.image_id))
        self._by_name.setdefault(level, SortedList()).add((entry.name, entry.image_id))
        self._by_rank.setdefault(level, SortedList()).add((entry.rank, entry.name, entry.image_id))
        entry.level = level

    # ------------------------------------------------------------------ answering
    def candidates(
        self, user_id: str, *, replicates: int, order: Order, unseen_first: bool, now: datetime
    ) -> Generator[str, None, None]:
        """Image ids the user may annotate, best first, by the rules of ``domain.candidates``.

        A generator over live structures: take what you need, then change the selection.
        """
        self.expire(now)
        yield from self._held_first(user_id, order, unseen_first)
        done = self._done.get(user_id, set())
        held = self._held.get(user_id, set())
        levels = [level for level in range(replicates) if level in self._by_name]
        walks = [self._walk(level, user_id, order) for level in levels]
        ordered: Iterable[tuple[object, str]]
        if unseen_first:
            ordered = (item for walk in walks for item in walk)
        else:
            ordered = heapq.merge(*walks)
        for _, image_id in ordered:
            if image_id not in done and image_id not in held:
                yield image_id

    def _held_first(self, user_id: str, order: Order, unseen_first: bool) -> list[str]:
        held = [self._entries[i] for i in self._held.get(user_id, ()) if i in self._entries]
        user = user_key(user_id)

        def key(entry: Entry) -> tuple[int, object]:
            level = entry.level if unseen_first else 0
            if order is Order.RANDOM:
                return level, (entry.rank ^ user, entry.name)
            if order is Order.NAME_DESC:
                return level, _Descending(entry.name)
            return level, entry.name

        return [entry.image_id for entry in sorted(held, key=key)]

    def _walk(self, level: int, user_id: str, order: Order) -> Iterator[tuple[object, str]]:
        """One bucket in the task's order, as (sort key, image id) so buckets can be merged."""
        if order is Order.RANDOM:
            user = user_key(user_id)
            for rank, name, image_id in xor_order(self._by_rank[level], user):
                yield (rank ^ user, name), image_id
        elif order is Order.NAME_DESC:
            for name, image_id in reversed(self._by_name[level]):
                yield _Descending(name), image_id
        else:
            yield from self._by_name[level]


class _Descending:
    """A name that sorts backwards (for merging buckets in ``name_desc`` order)."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __lt__(self, other: _Descending) -> bool:
        return self.name > other.name

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.name == other.name

    def __hash__(self) -> int:
        return hash(self.name)


def xor_order(items: SortedList, key: int, bits: int = 64) -> Iterator[tuple[int, str, str]]:
    """``items`` (sorted tuples whose first element is a ``bits``-bit rank) in increasing
    ``rank ^ key`` order, ties by the rest of the tuple, lazily."""
    stack = [(0, len(items), 0, bits - 1)]  # [lo, hi) share the rank's bits above `bit`, which are `prefix`
    while stack:
        lo, hi, prefix, bit = stack.pop()
        if lo >= hi:
            continue
        if bit < 0 or hi - lo <= _DIRECT_SORT:
            yield from sorted(items[lo:hi], key=lambda item: (item[0] ^ key, item[1:]))
            continue
        split = items.bisect_left((prefix | 1 << bit,))
        zeros, ones = (lo, split, prefix, bit - 1), (split, hi, prefix | 1 << bit, bit - 1)
        first, second = (ones, zeros) if key >> bit & 1 else (zeros, ones)
        stack.append(second)
        stack.append(first)
