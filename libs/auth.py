"""Accounts' credentials: argon2 password hashes and signed bearer tokens (JWT, HS256)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

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


def issue_token(user_id: str, key: str, minutes: int) -> str:
    now = datetime.now(UTC)
    claims = {"sub": user_id, "iat": now, "exp": now + timedelta(minutes=minutes), "typ": "access"}
    return jwt.encode(claims, key, algorithm="HS256")


def read_token(token: str, key: str) -> str:
    """The user id a valid token names; :class:`Unauthenticated` otherwise."""
    try:
        claims = jwt.decode(token, key, algorithms=["HS256"], options={"require": ["sub", "exp"]})
    except jwt.ExpiredSignatureError as exc:
        raise Unauthenticated("the session has expired; sign in again") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthenticated("invalid credentials") from exc
    return str(claims["sub"])
