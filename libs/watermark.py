"""Reconciliation from a watermark: a clean pass records when it began, and the next pass looks only
at the submissions created since then (less a slack for clocks and for writes in flight), so a
restart costs what arrived since the last pass, not a scan of every task. The first pass, with no
watermark yet, looks at everything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from crowdseg.domain import Submission
from crowdseg.ports import Store

# Longer than a submission can take from its created_at to its insert, and than the clocks of two
# replicas disagree by.
SLACK = timedelta(minutes=10)


@dataclass(frozen=True)
class Watermark:
    store: Store
    key: str
    slack: timedelta = SLACK

    async def recent_submissions(self) -> list[Submission] | None:
        """The submissions to look at, or None when there is no watermark yet (look at everything)."""
        value = await self.store.meta.get(self.key)
        if value is None:
            return None
        return await self.store.submissions.created_since(datetime.fromisoformat(value) - self.slack)

    async def advance(self, began: datetime) -> None:
        """Record a clean pass that began at ``began``."""
        await self.store.meta.put(self.key, began.isoformat())
