"""Full garbage collections kept short on a large, long-lived heap (issue 8).

CPython's full collection walks every tracked object. The assign service's selection structures hold a
few objects per image, so at 20 000 images the request process paused 60–160 ms in a full collection
every 1.5–2 s under load (its trigger, a quarter more objects promoted to the oldest generation, is
met by the in-flight requests alone): the largest part of ``next``'s p99. Objects that survived a full
collection are almost all long-lived, so whenever one takes longer than the budget, everything that
survived it is frozen (:func:`gc.freeze`): later collections walk only what came after.

The cost, a bounded one: a cycle among frozen objects is never collected. What is frozen is what was
alive right after a full collection — the structures plus the requests in flight at that moment — and
a freeze happens only after the heap has grown by a budget's worth of survivors.
"""

from __future__ import annotations

import gc
import time
from typing import Any

from crowdseg import metrics

FULL_COLLECTION_BUDGET_SECONDS = 0.010
OLDEST = 2


class FreezeSlowCollections:
    """A :data:`gc.callbacks` entry: freezes what survived a full collection longer than ``budget``."""

    def __init__(self, budget: float = FULL_COLLECTION_BUDGET_SECONDS) -> None:
        self.budget = budget
        self.freezes = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info.get("generation") != OLDEST:
            return
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        metrics.FULL_COLLECTION_SECONDS.observe(pause)
        if pause > self.budget:
            gc.freeze()
            self.freezes += 1
            metrics.FROZEN_OBJECTS.set(gc.get_freeze_count())


def keep_full_collections_short(budget: float = FULL_COLLECTION_BUDGET_SECONDS) -> FreezeSlowCollections:
    """For a server process, once: installs :class:`FreezeSlowCollections` (the first slow full
    collection freezes what start-up built). Returns the installed callback, to remove it."""
    for callback in gc.callbacks:
        if isinstance(callback, FreezeSlowCollections):
            return callback
    callback = FreezeSlowCollections(budget)
    gc.callbacks.append(callback)
    return callback
