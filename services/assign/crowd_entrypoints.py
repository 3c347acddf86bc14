"""HTTP routes of external crowds (study links, their workers' sessions, the ledger) and invitations."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from crowdseg.access import managed_task
from crowdseg.auth import CSRF_COOKIE, SESSION_COOKIE, issue_token
from crowdseg.domain import Invitation, LinkKind, StudyLink, User, utcnow
from crowdseg.http import CurrentUser, RuntimeDep, StoreDep
from crowdseg.paging import PAGED_RESPONSES, PagingDep
from crowdseg.services.assign import crowds
from crowdseg.services.assign.crowds import CreateInvitation, CreateLink, LinkProgress, PanelParameters
from crowdseg.settings import CommonSettings
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

Responses = dict[int | str, dict[str, Any]]
OWNER_ONLY: Responses = {403: {"description": "only the task's owner or an admin may do this"}}
LINK_CLOSED: Responses = {410: {"description": "the study link has been revoked by the task's owner"}}


class LinkOut(BaseModel):
    id: str
    task_id: str
    kind: LinkKind
    quota: int
    url: str
    panel_url: str
    completion_code: str
    completion_url: str | None
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, link: StudyLink, base: str) -> LinkOut:
        url = f"{base}/study/{link.id}"
        return cls(**link.model_dump(), url=url, panel_url=url + PANEL_QUERY[link.kind])


# What to paste into the panel: the link with the panel's own placeholders (MTurk adds its parameters itself).
PANEL_QUERY = {
    LinkKind.PROLIFIC: "?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}",
    LinkKind.MTURK: "",
    LinkKind.GENERIC: "?worker=",
}


class LinkTask(BaseModel):
    id: str
    title: str
    instructions: str
    tool: str


class LinkInfo(BaseModel):
    """What anyone holding the link may see before starting: the task's title and instructions."""

    id: str
    kind: LinkKind
    quota: int
    task: LinkTask


class ProgressOut(BaseModel):
    link_id: str
    task_id: str
    images: int
    quota: int
    done: bool
    completion_code: str | None = None
    completion_url: str | None = None

    @classmethod
    def of(cls, progress: LinkProgress) -> ProgressOut:
        link = progress.link
        return cls(
            link_id=link.id,
            task_id=link.task_id,
            images=progress.images,
            quota=link.quota,
            done=progress.done,
            completion_code=link.completion_code if progress.done else None,
            completion_url=link.completion_url if progress.done else None,
        )


class LinkSessionOut(ProgressOut):
    preview: bool
    created: bool
    external_id: str | None
    user_id: str | None
    access_token: str | None
    token_type: str = "bearer"
    mturk_submit_to: str | None = None


class InvitationOut(BaseModel):
    id: str
    task_id: str
    url: str
    email: str | None
    expires_at: datetime
    created_at: datetime
    revoked_at: datetime | None
    accepted_by: list[str]

    @classmethod
    def of(cls, invitation: Invitation, base: str) -> InvitationOut:
        return cls(**invitation.model_dump(), url=f"{base}/invite/{invitation.id}")


class AcceptedOut(BaseModel):
    task_id: str
    title: str


def public_base(request: Request, settings: CommonSettings) -> str:
    """Where users reach the web UI: the configured public URL, else the address this request came to
    (as the cluster gateway forwards it)."""
    if settings.public_url:
        return settings.public_url.rstrip("/")
    proto = request.headers.get("x-forwarded-proto", "").split(",")[0].strip() or request.url.scheme
    host = request.headers.get("x-forwarded-host", "").split(",")[0].strip() or request.url.netloc
    return f"{proto}://{host}"


def start_session(response: Response, user: User, settings: CommonSettings) -> str:
    """A token for the user, also set as the session cookie with its CSRF cookie (as a sign-in does)."""
    token = issue_token(user.id, settings.signing_key(), settings.token_minutes, user.token_version)
    max_age, secure = settings.token_minutes * 60, settings.cookie_secure
    response.set_cookie(SESSION_COOKIE, token, max_age=max_age, httponly=True, samesite="strict", secure=secure)
    response.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(24), max_age=max_age, samesite="strict", secure=secure)
    return token


def router() -> APIRouter:
    api = APIRouter(tags=["external crowds and invitations"])

    # ---- study links (the task's owner) -------------------------------------------------------
    @api.post("/tasks/{task_id}/links", status_code=201, responses=OWNER_ONLY)
    async def create_link(
        task_id: str, body: CreateLink, user: CurrentUser, runtime: RuntimeDep, request: Request
    ) -> LinkOut:
        """A study link for Prolific, MTurk or any panel: workers who open `url` with the panel's worker
        id annotate up to `quota` images, then see `completion_code` (or go to `completion_url`).
        `panel_url` is what to paste into the panel (with its placeholders)."""
        link = await crowds.create_link(runtime.store, user, task_id, body)
        return LinkOut.of(link, public_base(request, runtime.settings))

    @api.get("/tasks/{task_id}/links", responses={**PAGED_RESPONSES, **OWNER_ONLY})
    async def list_links(
        task_id: str, user: CurrentUser, runtime: RuntimeDep, request: Request, paging: PagingDep
    ) -> list[LinkOut]:
        """The task's study links, revoked ones too, by creation."""
        scope = f"links:{task_id}"
        page = await crowds.links_of(runtime.store, user, task_id, limit=paging.limit, after=paging.after(scope))
        paging.finish(scope, page)
        base = public_base(request, runtime.settings)
        return [LinkOut.of(link, base) for link in page.items]

    @api.delete("/tasks/{task_id}/links/{link_id}", responses=OWNER_ONLY)
    async def revoke_link(
        task_id: str, link_id: str, user: CurrentUser, runtime: RuntimeDep, request: Request
    ) -> LinkOut:
        """Close the link: it opens no more, and its workers get no more images (their work is kept)."""
        link = await crowds.revoke_link(runtime.store, user, task_id, link_id, utcnow())
        return LinkOut.of(link, public_base(request, runtime.settings))

    @api.get(
        "/tasks/{task_id}/ledger",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "one row per worker of every link of the task",
                "content": {"text/csv": {"schema": {"type": "string"}}},
            },
            **OWNER_ONLY,
        },
    )
    async def ledger(task_id: str, user: CurrentUser, store: StoreDep) -> StreamingResponse:
        """CSV: `external_id, kind, images, seconds, first_at, last_at, link_id, completed` (for paying the
        panel's workers); cells that a spreadsheet would run as formulas are escaped."""
        task = await managed_task(store, task_id, user)
        return StreamingResponse(
            crowds.ledger_csv(store, task),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="ledger-{task.id}.csv"'},
        )

    # ---- opening a link (the panel's worker) ---------------------------------------------------
    @api.get("/links/{link_id}", responses=LINK_CLOSED)
    async def link_info(link_id: str, store: StoreDep) -> LinkInfo:
        """The task behind a study link, for anyone holding it (the link is the credential)."""
        link, task = await crowds.open_link_of(store, link_id)
        return LinkInfo(
            id=link.id,
            kind=link.kind,
            quota=link.quota,
            task=LinkTask(id=task.id, title=task.title, instructions=task.instructions, tool=task.tool.value),
        )

    @api.post("/links/{link_id}/sessions", responses=LINK_CLOSED)
    async def open_link(link_id: str, body: PanelParameters, runtime: RuntimeDep, response: Response) -> LinkSessionOut:
        """Sign in the panel's worker named by the query parameters the panel added to the link
        (`PROLIFIC_PID`, `STUDY_ID`, `SESSION_ID`; `workerId`, `assignmentId`, `hitId`; or `worker`): an
        anonymous annotator account, made on the first visit and the same on every later one. An MTurk
        preview (`assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE`) makes nothing: `preview` is true."""
        session = await crowds.open_link(runtime.store, link_id, body)
        progress = ProgressOut.of(session.progress)
        token = None
        if session.user is not None:
            token = start_session(response, session.user, runtime.settings)
        return LinkSessionOut(
            **progress.model_dump(),
            preview=session.worker is None,
            created=session.created,
            external_id=session.worker.external_id if session.worker else None,
            user_id=session.user.id if session.user else None,
            access_token=token,
            mturk_submit_to=session.submit_to,
        )

    @api.get("/links/{link_id}/progress")
    async def link_progress(link_id: str, user: CurrentUser, store: StoreDep) -> ProgressOut:
        """The signed-in worker's images of the link's quota; once done, the completion code."""
        return ProgressOut.of(await crowds.progress_of(store, user, link_id))

    # ---- invitations ------------------------------------------------------------------------------
    @api.post("/tasks/{task_id}/invitations", status_code=201, responses=OWNER_ONLY)
    async def create_invitation(
        task_id: str, body: CreateInvitation, user: CurrentUser, runtime: RuntimeDep, request: Request
    ) -> InvitationOut:
        """A link that makes the signed-in user who opens it a member of the task (only the account
        with `email`, if given) until it expires or is revoked."""
        invitation = await crowds.create_invitation(runtime.store, user, task_id, body, utcnow())
        return InvitationOut.of(invitation, public_base(request, runtime.settings))

    @api.get("/tasks/{task_id}/invitations", responses={**PAGED_RESPONSES, **OWNER_ONLY})
    async def list_invitations(
        task_id: str, user: CurrentUser, runtime: RuntimeDep, request: Request, paging: PagingDep
    ) -> list[InvitationOut]:
        """The task's invitations, expired and revoked ones too, by creation."""
        scope = f"invitations:{task_id}"
        page = await crowds.invitations_of(runtime.store, user, task_id, limit=paging.limit, after=paging.after(scope))
        paging.finish(scope, page)
        base = public_base(request, runtime.settings)
        return [InvitationOut.of(invitation, base) for invitation in page.items]

    @api.delete("/tasks/{task_id}/invitations/{invitation_id}", responses=OWNER_ONLY)
    async def revoke_invitation(
        task_id: str, invitation_id: str, user: CurrentUser, runtime: RuntimeDep, request: Request
    ) -> InvitationOut:
        """Withdraw the invitation: it can no longer be accepted (members it made stay members)."""
        invitation = await crowds.revoke_invitation(runtime.store, user, task_id, invitation_id, utcnow())
        return InvitationOut.of(invitation, public_base(request, runtime.settings))

    @api.post(
        "/invitations/{invitation_id}/accept",
        responses={
            403: {"description": "the invitation is for another account's email"},
            410: {"description": "the invitation has expired or has been revoked"},
        },
    )
    async def accept_invitation(invitation_id: str, user: CurrentUser, store: StoreDep) -> AcceptedOut:
        """Become a member of the invitation's task."""
        task = await crowds.accept_invitation(store, user, invitation_id, utcnow())
        return AcceptedOut(task_id=task.id, title=task.title)

    return api
