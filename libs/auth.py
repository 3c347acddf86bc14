"""Accounts' credentials: argon2 password hashes and signed bearer tokens (JWT, HS256).

A token names its user and the user's ``token_version`` when it was issued; signing out bumps the
version, so every token issued before is refused by every service that reads the user (issue 9).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache, lru_cache

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from crowdseg.errors import Unauthenticated

SESSION_COOKIE = "crowdseg_session"
CSRF_COOKIE = "crowdseg_csrf"
CSRF_HEADER = "x-csrf-token"
_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _dummy_hash() -> str:
    return _hasher.hash("crowdseg: no account has this password hash")


def verify_no_account(password: str) -> bool:
    """The same argon2 work as :func:`verify_password`, for an email that has no account: a sign-in
    with an unknown email takes as long as one with a wrong password (issue 9: it answered at once,
    which told who has an account). Always False."""
    verify_password(_dummy_hash(), password)
    return False


@dataclass(frozen=True)
class TokenClaims:
    user_id: str
    version: int


def issue_token(user_id: str, key: str, minutes: int, version: int = 0) -> str:
    now = datetime.now(UTC)
    claims = {
        "sub": user_id,
        "ver": version,
        "iat": now,
        "exp": now + timedelta(minutes=minutes),
        "typ": "access",
    }
    return jwt.encode(claims, key, algorithm="HS256")


def read_token(token: str, key: str) -> TokenClaims:
    """The user and token version a validly signed, unexpired token names; :class:`Unauthenticated`
    otherwise. Whether the version is still the user's is for the caller, who reads the user."""
    claims, expires_at = _verified(token, key)
    if time.time() >= expires_at:
        raise Unauthenticated("the session has expired; sign in again")
    return claims


@lru_cache(maxsize=8192)
def _verified(token: str, key: str) -> tuple[TokenClaims, float]:
    """A token's claims and expiry once its signature is checked. Remembered for the exact token
    string (a signature check and JSON decoding were a tenth of every request's CPU, issue 8); what
    can change, the expiry and the user's token version, is still checked on every request. Refused
    tokens raise, so they are not remembered."""
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("the session has expired; sign in again") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated("invalid credentials") from exc
    version = claims.get("ver", 0)
    expires_at = claims["exp"]
    if not isinstance(version, int) or isinstance(version, bool) or not isinstance(expires_at, int | float):
        raise Unauthenticated("invalid credentials")
    return TokenClaims(str(claims["sub"]), version), float(expires_at)
