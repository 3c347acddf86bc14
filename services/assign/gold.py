"""Gold in the stream: how often ``next`` answers one of the task's reference images.

Like Zooniverse's designator, which mixes gold subjects into a volunteer's stream at a share that
falls from 40 % to 10 % as they gain experience: an annotator with ``n`` submissions in the task is
served a gold image with probability

    share(n) = gold_rate · max(1/4, 1 / (1 + n/20))

so the share starts at ``gold_rate``, is half of it after 20 submissions and settles at a quarter of
it from 60 on (``gold_rate`` 0.4: 40 % → 20 % → 10 %). The draw is not random but a hash of the task,
the user and ``n``: the same request gets the same answer until the user submits, and tests can
predict every draw.
"""

from __future__ import annotations

import hashlib

GOLD_FLOOR = 0.25
"""The share's floor, as a fraction of ``gold_rate``."""
GOLD_HALF = 20
"""Submissions after which the share is half of ``gold_rate``."""


def gold_share(rate: float, submissions: int) -> float:
    """The probability that the next answer of a user with ``submissions`` in the task is gold."""
    return rate * max(GOLD_FLOOR, 1.0 / (1.0 + max(submissions, 0) / GOLD_HALF))


def gold_draw(task_id: str, user_id: str, submissions: int) -> float:
    """A number in [0, 1) fixed by the task, the user and their count."""
    digest = hashlib.blake2b(f"{task_id}/{user_id}/{submissions}".encode(), digest_size=8, person=b"crowdseg-gold")
    return int.from_bytes(digest.digest(), "big") / 2**64


def serves_gold(rate: float, task_id: str, user_id: str, submissions: int) -> bool:
    """Whether the user's next answer is a gold image (if one is left for them)."""
    return rate > 0 and gold_draw(task_id, user_id, submissions) < gold_share(rate, submissions)
