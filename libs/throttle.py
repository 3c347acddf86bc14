"""Sign-in throttling: a moving window of failed sign-ins per account email and per client address.

A sign-in is refused with :class:`TooManyRequests` (429, ``Retry-After``) before any password is
checked once the email or the address has used up its failures within the window; a successful
sign-in clears that email's failures (not the address's). Counts live in the memory of the process
that answers ``/auth/login`` (the gateway): each gateway replica counts on its own, and a restart
forgets them. Implemented with the ``limits`` package (moving window, in-memory storage).
"""

from __future__ import annotations

import math
import time

from crowdseg.errors import TooManyRequests
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


class LoginThrottle:
    def __init__(self, per_email: str, per_address: str) -> None:
        self.per_email: RateLimitItem = parse(per_email)
        self.per_address: RateLimitItem = parse(per_address)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, email: str, address: str) -> None:
        """:class:`TooManyRequests` if the email or the address has no failures left."""
        for item, kind, key in ((self.per_email, "email", email), (self.per_address, "address", address)):
            if not self._limiter.test(item, kind, key):
                stats = self._limiter.get_window_stats(item, kind, key)
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                whose = "this account" if kind == "email" else "your address"
                raise TooManyRequests(
                    f"too many failed sign-ins for {whose}; try again in {retry_after} s", retry_after=retry_after
                )

    def failed(self, email: str, address: str) -> None:
        self._limiter.hit(self.per_email, "email", email)
        self._limiter.hit(self.per_address, "address", address)

    def succeeded(self, email: str) -> None:
        self._limiter.clear(self.per_email, "email", email)
