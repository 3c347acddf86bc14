"""Verified tokens are remembered (issue 8: the HS256 check and JSON decoding of the bearer token were
a tenth of every request's CPU); what may change is still checked on every request."""

from __future__ import annotations

import time

import jwt
import pytest
from crowdseg.auth import issue_token, read_token
from crowdseg.errors import Unauthenticated

pytestmark = pytest.mark.unit

KEY = "k" * 40


def test_a_remembered_token_still_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    token = issue_token("u1", KEY, minutes=1)
    assert read_token(token, KEY).user_id == "u1"  # verified, and now remembered
    later = time.time() + 61
    monkeypatch.setattr(time, "time", lambda: later)
    with pytest.raises(Unauthenticated, match="expired"):
        read_token(token, KEY)


def test_a_token_is_remembered_only_under_the_key_that_signed_it() -> None:
    token = issue_token("u2", KEY, minutes=5)
    assert read_token(token, KEY).user_id == "u2"
    with pytest.raises(Unauthenticated, match="invalid"):
        read_token(token, "x" * 40)


def test_a_refused_token_is_refused_every_time() -> None:
    forged = jwt.encode({"sub": "admin", "exp": time.time() + 300}, "not-the-key" * 4, algorithm="HS256")
    for _ in range(2):
        with pytest.raises(Unauthenticated, match="invalid"):
            read_token(forged, KEY)
