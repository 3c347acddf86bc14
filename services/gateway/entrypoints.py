"""HTTP routes of accounts and sessions."""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

from crowdseg.auth import CSRF_COOKIE, SESSION_COOKIE
from crowdseg.domain import Role, User
from crowdseg.errors import Unauthenticated
from crowdseg.http import CurrentUser, RuntimeDep, StoreDep, presented_token, require_role, user_of_token
from crowdseg.paging import PAGED_RESPONSES, PagingDep
from crowdseg.progress import experience
from crowdseg.runtime import Runtime
from crowdseg.services.consensus.handlers import user_quality
from crowdseg.services.gateway import handlers
from crowdseg.services.gateway.handlers import LogIn, SetRoles, SignUp
from crowdseg.throttle import LoginThrottle
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel


class UserOut(BaseModel):
    id: str
    email: str
    name: str
    roles: list[Role]

    @classmethod
    def of(cls, user: User) -> UserOut:
        return cls(id=user.id, email=user.email, name=user.name, roles=user.roles)


class MeOut(UserOut):
    level: int
    xp: int
    link_id: str | None = None  # the study link that made this anonymous account


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    user: UserOut


LOGIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "wrong email or password (the same answer, and the same work, for both)"},
    429: {
        "description": "too many failed sign-ins for this email or from this address",
        "headers": {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    },
}


def router() -> APIRouter:
    api = APIRouter(tags=["accounts"])

    @api.post("/auth/signup", status_code=201)
    async def sign_up(body: SignUp, store: StoreDep) -> UserOut:
        return UserOut.of(await handlers.sign_up(store, body))

    throttles: list[LoginThrottle] = []  # this app's, made from its settings on the first sign-in

    def throttle_for(runtime: Runtime) -> LoginThrottle:
        if not throttles:
            settings = runtime.settings
            throttles.append(
                LoginThrottle(
                    getattr(settings, "login_failures_per_email", "10/15 minutes"),
                    getattr(settings, "login_failures_per_address", "100/15 minutes"),
                )
            )
        return throttles[0]

    @api.post("/auth/login", responses=LOGIN_RESPONSES)
    async def log_in(body: LogIn, runtime: RuntimeDep, request: Request, response: Response) -> TokenOut:
        """A bearer token (also set as the HttpOnly session cookie, with a CSRF cookie). Failed sign-ins
        are limited per email and per client address; past the limit the answer is 429 with
        Retry-After, before any password is checked."""
        settings = runtime.settings
        user, token = await handlers.log_in(
            runtime.store,
            body,
            key=settings.signing_key(),
            minutes=settings.token_minutes,
            throttle=throttle_for(runtime),
            address=request.client.host if request.client else "",
        )
        max_age = settings.token_minutes * 60
        secure = settings.cookie_secure
        response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="strict", secure=secure)
        response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), max_age=max_age, samesite="strict", secure=secure)
        return TokenOut(access_token=token, user=UserOut.of(user))

    @api.post("/auth/logout", status_code=204)
    async def log_out(request: Request, runtime: RuntimeDep, response: Response) -> None:
        """Ends every session of the caller: each token issued to them so far is refused from now on,
        by every service. Without valid credentials it only clears the cookies."""
        token, _ = presented_token(request)
        user = None
        if token is not None:
            with contextlib.suppress(Unauthenticated):
                user = await user_of_token(runtime, token)
        await handlers.log_out(runtime.store, user)
        response.delete_cookie(SESSION_COOKIE)
        response.delete_cookie(CSRF_COOKIE)

    @api.get("/me")
    async def me(user: CurrentUser, store: StoreDep) -> MeOut:
        tallies = await store.counters.tallies_for_user(user.id)
        level, xp = experience(sum(t.submissions for t in tallies), user_quality(tallies))
        return MeOut(**UserOut.of(user).model_dump(), level=level, xp=xp, link_id=user.link_id)

    @api.get("/users", responses={**PAGED_RESPONSES, 403: {"description": "this needs the admin role"}})
    async def list_users(user: CurrentUser, store: StoreDep, paging: PagingDep) -> list[UserOut]:
        """Every account, by creation."""
        require_role(user, Role.ADMIN)
        page = await store.users.page(limit=paging.limit, after=paging.after("users"))
        paging.finish("users", page)
        return [UserOut.of(u) for u in page.items]

    @api.put("/users/{user_id}/roles")
    async def set_roles(user_id: str, body: SetRoles, user: CurrentUser, store: StoreDep) -> UserOut:
        require_role(user, Role.ADMIN)
        return UserOut.of(await handlers.set_roles(store, user, user_id, body))

    return api
