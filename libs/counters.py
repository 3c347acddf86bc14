"""Counters kept as work arrives, so that a task's statistics never read every image, submission
or consensus of the task.

* :class:`TaskCounters`: per task, the coverage histogram (how many of its non-tutorial images
  have 0, 1, 2, ... submitters) and how many images have a consensus. The image count, the
  submission count and the complete images (as many submitters as the task's ``replicates``, which
  a task master may change) all follow from the histogram.
* :class:`Tally`: per (task, user), the user's submissions, time spent, and the confusion counts
  pooled over every image's consensus (see :mod:`crowdseg.consensus.performance`). A consensus that
  replaces an older one adds its raters' counts and takes the replaced one's away.

The stores keep them current in the same operations that change the documents (SQLite: triggers in
the same statement; MongoDB: right after the document's own write); :func:`rebuild` recomputes them
from the documents (for data written before counters existed, and as the tests' reference).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING

from crowdseg.domain import Consensus, Image, RaterScore, Submission
from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from crowdseg.ports import Store


class TaskCounters(BaseModel):
    task_id: str
    coverage: dict[int, int] = Field(default_factory=dict)
    """Submitters → non-tutorial images with that many submitters (levels without images omitted)."""
    consensus_images: int = 0

    @property
    def images(self) -> int:
        return sum(self.coverage.values())

    @property
    def submissions(self) -> int:
        return sum(level * count for level, count in self.coverage.items())

    def complete(self, replicates: int) -> int:
        """Images that need no more work: at least ``replicates`` submitters."""
        return sum(count for level, count in self.coverage.items() if level >= replicates)

    def histogram(self, replicates: int) -> dict[str, int]:
        """``{"<submissions>": <images>}`` for every level from 0 to the task's replicates (or higher)."""
        top = max([replicates, *self.coverage])
        return {str(level): self.coverage.get(level, 0) for level in range(top + 1)}

    def move(self, before: int | None, after: int | None) -> None:
        """One image went from ``before`` submitters to ``after`` (None: it did not exist / no longer does)."""
        for level, step in ((before, -1), (after, 1)):
            if level is not None:
                count = self.coverage.get(level, 0) + step
                if count:
                    self.coverage[level] = count
                else:
                    self.coverage.pop(level, None)

    def merged(self, other: TaskCounters) -> TaskCounters:
        total = TaskCounters(task_id=self.task_id, coverage=dict(self.coverage), consensus_images=self.consensus_images)
        for level, count in other.coverage.items():
            total.coverage[level] = total.coverage.get(level, 0) + count
        total.coverage = {level: count for level, count in sorted(total.coverage.items()) if count}
        total.consensus_images += other.consensus_images
        return total


class Tally(BaseModel):
    """One user's running record over one task."""

    task_id: str
    user_id: str
    submissions: int = 0
    seconds: float = 0.0
    timed: int = 0
    """Submissions that reported a duration (the ones ``seconds`` sums)."""
    days: dict[str, int] = Field(default_factory=dict)
    """UTC day (ISO date) → submissions."""
    scored: int = 0
    """Consensus scores with confusion counts (the images the pooled counts come from)."""
    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0
    tn: float = 0.0
    quality_sum: float = 0.0
    quality_n: int = 0
    # Scores stored without counts (documents older than the counts): their rates are averaged.
    sensitivity_sum: float = 0.0
    sensitivity_n: int = 0
    specificity_sum: float = 0.0
    specificity_n: int = 0

    # ------------------------------------------------------------------------- changes
    def add_submission(self, submission: Submission, sign: int = 1) -> None:
        self.submissions += sign
        if submission.duration_ms is not None:
            self.seconds += sign * submission.duration_ms / 1000
            self.timed += sign
        if submission.gold is not None and submission.gold.quality is not None:  # scored at once, never fused
            self.quality_sum += sign * submission.gold.quality
            self.quality_n += sign
        day = submission.created_at.date().isoformat()
        count = self.days.get(day, 0) + sign
        if count:
            self.days[day] = count
        else:
            self.days.pop(day, None)

    def add_score(self, score: RaterScore, sign: int = 1) -> None:
        if score.tp is not None and score.fp is not None and score.fn is not None:
            self.scored += sign
            self.tp += sign * score.tp
            self.fp += sign * score.fp
            self.fn += sign * score.fn
            self.tn += sign * (score.tn or 0.0)
        else:
            if score.sensitivity is not None:
                self.sensitivity_sum += sign * score.sensitivity
                self.sensitivity_n += sign
            if score.specificity is not None:
                self.specificity_sum += sign * score.specificity
                self.specificity_n += sign
        if score.quality is not None:
            self.quality_sum += sign * score.quality
            self.quality_n += sign

    # ------------------------------------------------------------------------- readings
    # The same rates as crowdseg.consensus.performance.Performance over the pooled counts, computed
    # here so that the stores need not import the consensus package (NumPy, SciPy, Shapely).
    def _rate(self, hits: float, misses: float, total: float, n: int) -> float | None:
        if self.scored > 0 and hits + misses > 0:
            return hits / (hits + misses)
        return total / n if n > 0 else None

    @property
    def sensitivity(self) -> float | None:
        """Pooled over the counts, else the mean of the scores stored without counts."""
        return self._rate(self.tp, self.fn, self.sensitivity_sum, self.sensitivity_n)

    @property
    def specificity(self) -> float | None:
        return self._rate(self.tn, self.fp, self.specificity_sum, self.specificity_n)

    @property
    def quality(self) -> float | None:
        """The mean of the per-image qualities (crowdseg.consensus.quality: agreement in 0–1 with the
        others or with a reference); None before any image scored the user."""
        if self.quality_n <= 0:
            return None
        return min(max(self.quality_sum / self.quality_n, 0.0), 1.0)

    @property
    def quality_images(self) -> int:
        """The images behind :attr:`quality`."""
        return max(self.quality_n, 0)

    @property
    def empty(self) -> bool:
        """Nothing counted (e.g. a rater whose only consensus score was taken away again)."""
        return not (self.submissions or self.scored or self.sensitivity_n or self.specificity_n or self.quality_n)

    @property
    def mean_seconds(self) -> float | None:
        return self.seconds / self.timed if self.timed > 0 else None


def consensus_tallies(
    tallies: dict[str, Tally], task_id: str, new: Consensus | None, old: Consensus | None = None
) -> None:
    """Apply a consensus that replaces ``old`` (None: the image's first) to the per-user tallies."""
    for consensus, sign in ((old, -1), (new, 1)):
        for score in consensus.raters if consensus is not None else []:
            tally = tallies.setdefault(score.user_id, Tally(task_id=task_id, user_id=score.user_id))
            tally.add_score(score, sign)


def rebuild(
    task_id: str, images: Iterable[Image], submissions: Iterable[Submission], consensuses: Iterable[Consensus]
) -> tuple[TaskCounters, list[Tally]]:
    """The task's counters and tallies recomputed from its documents (``images`` without tutorials)."""
    counters = TaskCounters(task_id=task_id)
    for image in images:
        if not image.tutorial:
            counters.move(None, len(image.submitted_by))
    tallies: dict[str, Tally] = {}
    for submission in submissions:
        tally = tallies.setdefault(submission.user_id, Tally(task_id=task_id, user_id=submission.user_id))
        tally.add_submission(submission)
    for consensus in consensuses:
        counters.consensus_images += 1
        consensus_tallies(tallies, task_id, consensus)
    counters.coverage = dict(sorted(counters.coverage.items()))
    return counters, [tallies[user_id] for user_id in sorted(tallies)]


async def counters_of(store: Store, task_ids: Collection[str]) -> dict[str, TaskCounters]:
    """The tasks' counters, rebuilt from the documents for any task that has none yet."""
    found = await store.counters.tasks(task_ids)
    for task_id in task_ids:
        if task_id not in found:
            found[task_id] = await store.counters.rebuild(task_id)
    return found
