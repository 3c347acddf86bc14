"""Sign-in hardening that needs no server: the dummy hash, token versions, the throttle (issue 9)."""

from __future__ import annotations

import argon2
import pytest
from crowdseg.auth import _dummy_hash, hash_password, issue_token, read_token, verify_no_account
from crowdseg.errors import TooManyRequests, Unauthenticated
from crowdseg.throttle import LoginThrottle

pytestmark = pytest.mark.unit

KEY = "k" * 32


def test_unknown_email_costs_the_same_argon2_work() -> None:
    """issue 9 item 8: an unknown email skipped argon2 and answered at once (a timing side channel
    that told who has an account); it is verified against a dummy hash of the same parameters."""
    assert argon2.extract_parameters(_dummy_hash()) == argon2.extract_parameters(hash_password("anything at all"))
    assert verify_no_account("crowdseg: no account has this password hash") is False
    assert verify_no_account("guess") is False


def test_tokens_carry_the_token_version() -> None:
    """issue 9 item 8: a token names the token version it was issued at, so signing out (a new version)
    ends it; tokens from before versions existed count as version 0."""
    claims = read_token(issue_token("u1", KEY, 5, version=3), KEY)
    assert (claims.user_id, claims.version) == ("u1", 3)
    assert read_token(issue_token("u1", KEY, 5), KEY).version == 0
    with pytest.raises(Unauthenticated):
        read_token(issue_token("u1", KEY, 5, version=3), "x" * 32)


def test_throttle_counts_failures_per_email_and_per_address() -> None:
    """issue 9 item 8: login had no rate limit or back-off — failed sign-ins are limited per email
    and per client address, a 429 tells when to retry, and success clears only the email's count."""
    throttle = LoginThrottle("3/15 minutes", "5/15 minutes")
    for _ in range(3):
        throttle.check("ann@example.org", "10.0.0.1")
        throttle.failed("ann@example.org", "10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        throttle.check("ann@example.org", "10.0.0.2")  # the account is throttled from anywhere
    assert 1 <= refused.value.retry_after <= 15 * 60
    throttle.check("bob@example.org", "10.0.0.1")  # another account from the same address still may
    throttle.failed("bob@example.org", "10.0.0.1")
    throttle.failed("cat@example.org", "10.0.0.1")
    with pytest.raises(TooManyRequests, match="your address"):
        throttle.check("dan@example.org", "10.0.0.1")  # five failures from one address: all its sign-ins wait
    throttle.check("dan@example.org", "10.0.0.9")
    throttle.succeeded("ann@example.org")
    throttle.check("ann@example.org", "10.0.0.2")
