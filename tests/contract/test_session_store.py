"""Signing out is a store operation every service sees: the user's token version (issue 9)."""

from __future__ import annotations

import asyncio

import pytest
from crowdseg.domain import User
from crowdseg.ports import Store

pytestmark = pytest.mark.contract


async def test_end_sessions_bumps_the_token_version_atomically(store: Store) -> None:
    """issue 9 item 8: logout left the bearer token valid for 12 h — the store must keep a token
    version that every service reads with the user, and racing sign-outs must each count."""
    user = await store.users.add(User(email="leaver@example.org", name="Leaver", password_hash="x"))
    assert user.token_version == 0
    ended = await store.users.end_sessions(user.id)
    assert ended is not None and ended.token_version == 1
    stored = await store.users.get(user.id)
    assert stored is not None and stored.token_version == 1
    await asyncio.gather(*(store.users.end_sessions(user.id) for _ in range(8)))
    stored = await store.users.get(user.id)
    assert stored is not None and stored.token_version == 9
    assert stored.roles == user.roles and stored.email == user.email  # nothing else changed
    assert await store.users.end_sessions("nobody") is None
