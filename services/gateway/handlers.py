"""Accounts: sign-up, sign-in and roles. Knows nothing about HTTP."""

from __future__ import annotations

import asyncio

from crowdseg.auth import hash_password, issue_token, verify_no_account, verify_password
from crowdseg.domain import Role, User
from crowdseg.errors import Conflict, Forbidden, NotFound, Unauthenticated
from crowdseg.ports import Store
from crowdseg.throttle import LoginThrottle
from pydantic import BaseModel, ConfigDict, EmailStr, Field


class SignUp(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
    email: EmailStr
    password: str = Field(min_length=8, max_length=256)
    name: str = Field(min_length=1, max_length=120)


class LogIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=320)
    password: str = Field(max_length=256)


class SetRoles(BaseModel):
    model_config = ConfigDict(extra="forbid")
    roles: list[Role] = Field(min_length=1)


async def sign_up(store: Store, command: SignUp) -> User:
    email = command.email.lower()
    if await store.users.by_email(email) is not None:
        raise Conflict("an account with this email already exists")
    # argon2 takes tens of milliseconds of CPU by design: in a worker thread, not on the event loop.
    password_hash = await asyncio.to_thread(hash_password, command.password)
    user = User(email=email, name=command.name, password_hash=password_hash)
    return await store.users.add(user)


async def log_in(
    store: Store, command: LogIn, *, key: str, minutes: int, throttle: LoginThrottle, address: str
) -> tuple[User, str]:
    """A token for the account, or :class:`Unauthenticated` alike for an unknown email and a wrong
    password (the same argon2 work for both); :class:`TooManyRequests` once the email or the address
    has used up its failed sign-ins, before any password is checked."""
    email = command.email.strip().lower()
    throttle.check(email, address)
    user = await store.users.by_email(email)
    if user is None:
        verified = await asyncio.to_thread(verify_no_account, command.password)
    else:
        verified = await asyncio.to_thread(verify_password, user.password_hash, command.password)
    if user is None or not verified:
        throttle.failed(email, address)
        raise Unauthenticated("wrong email or password")
    throttle.succeeded(email)
    return user, issue_token(user.id, key, minutes, user.token_version)


async def log_out(store: Store, user: User | None) -> None:
    """End every session of the signed-in user (all their tokens); nothing to do for anyone else."""
    if user is not None:
        await store.users.end_sessions(user.id)


async def set_roles(store: Store, actor: User, user_id: str, command: SetRoles) -> User:
    roles = sorted(set(command.roles), key=list(Role).index)
    if actor.id == user_id and Role.ADMIN not in roles:
        raise Forbidden("admins cannot remove their own admin role")  # 403: not bad input (issue 9)
    user = await store.users.set_roles(user_id, roles)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user
