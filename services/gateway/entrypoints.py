"""HTTP routes of accounts and sessions."""

from __future__ import annotations

import secrets

from crowdseg.auth import CSRF_COOKIE, SESSION_COOKIE
from crowdseg.domain import Role, User
from crowdseg.http import CurrentUser, RuntimeDep, StoreDep, require_role
from crowdseg.paging import PAGED_RESPONSES, PagingDep
from crowdseg.progress import experience
from crowdseg.services.consensus.handlers import user_quality
from crowdseg.services.gateway import handlers
from crowdseg.services.gateway.handlers import LogIn, SetRoles, SignUp
from fastapi import APIRouter, Response
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


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"
    user: UserOut


def router() -> APIRouter:
    api = APIRouter(tags=["accounts"])

    @api.post("/auth/signup", status_code=201)
    async def sign_up(body: SignUp, store: StoreDep) -> UserOut:
        return UserOut.of(await handlers.sign_up(store, body))

    @api.post("/auth/login")
    async def log_in(body: LogIn, runtime: RuntimeDep, response: Response) -> TokenOut:
        settings = runtime.settings
        user, token = await handlers.log_in(
            runtime.store, body, key=settings.signing_key(), minutes=settings.token_minutes
        )
        max_age = settings.token_minutes * 60
        secure = settings.cookie_secure
        response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="strict", secure=secure)
        response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), max_age=max_age, samesite="strict", secure=secure)
        return TokenOut(access_token=token, user=UserOut.of(user))

    @api.post("/auth/logout", status_code=204)
    async def log_out(response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE)
        response.delete_cookie(CSRF_COOKIE)

    @api.get("/me")
    async def me(user: CurrentUser, store: StoreDep) -> MeOut:
        tallies = await store.counters.tallies_for_user(user.id)
        level, xp = experience(sum(t.submissions for t in tallies), user_quality(tallies))
        return MeOut(**UserOut.of(user).model_dump(), level=level, xp=xp)

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
