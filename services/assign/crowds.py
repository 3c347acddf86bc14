"""External crowds and invitations. Knows nothing about HTTP or Kafka.

A study link lets a panel (Prolific, MTurk, any other) send workers to a task: whoever opens it with
the panel's worker id is signed in as an anonymous annotator bound to that id, works up to the link's
quota, and is then shown the completion code (or sent to the completion URL). The worker record's id
is ``<link id>/<external id>``, so the store's unique key turns concurrent first visits into one
worker, and the account's id is the worker's, so every visit ends in the same account. Nothing here
calls a panel's API.

An invitation makes the signed-in user who opens it a member of a (private) task.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from crowdseg.access import managed_task
from crowdseg.domain import (
    BLANK,
    Invitation,
    JsonFloat,
    JsonInt,
    LinkKind,
    LinkWorker,
    Role,
    StudyLink,
    Submission,
    Task,
    TaskStatus,
    User,
    json_time,
    new_id,
)
from crowdseg.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound, Unavailable
from crowdseg.ports import Key, Page, Store
from crowdseg.spreadsheets import csv_bytes
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

MAX_QUOTA = 10_000
# What a panel's ids look like (Prolific: 24 hex digits; MTurk: upper-case letters and digits): letters,
# digits and a few separators. An unsubstituted placeholder (`{{%PROLIFIC_PID%}}`) does not pass.
PANEL_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]*$"
MAX_PANEL_ID = 128
PanelId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PANEL_ID, pattern=PANEL_ID)]
MTURK_PREVIEW = "ASSIGNMENT_ID_NOT_AVAILABLE"  # MTurk's assignmentId while a worker only previews the HIT
MTURK_SUBMIT = r"^https://(www|workersandbox)\.mturk\.com/?$"
LINK_EMAIL_DOMAIN = "study-link.invalid"  # `.invalid` is reserved: nobody can sign up with such an address
NO_PASSWORD = "!study-link"  # not an argon2 hash: no password ever verifies against it
LEDGER_COLUMNS = ["external_id", "kind", "images", "seconds", "first_at", "last_at", "link_id", "completed"]
LEDGER_PAGE = 500
MAX_INVITATION_HOURS = 24 * 365

# The query parameters each panel sends, by link kind: (the external id's, the other ones it must send).
PANEL_PARAMETERS: dict[LinkKind, tuple[str, tuple[str, ...]]] = {
    LinkKind.PROLIFIC: ("PROLIFIC_PID", ("STUDY_ID", "SESSION_ID")),
    LinkKind.MTURK: ("workerId", ("assignmentId", "hitId")),
    LinkKind.GENERIC: ("worker", ()),
}
PANEL_NAMES = {LinkKind.PROLIFIC: "a Prolific", LinkKind.MTURK: "an MTurk", LinkKind.GENERIC: "a generic"}


class CreateLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: LinkKind
    quota: JsonInt = Field(ge=1, le=MAX_QUOTA, description="images each worker annotates before the code")
    # Only http(s): the web UI sends the worker there (never a `javascript:` URL).
    completion_url: Annotated[str, StringConstraints(max_length=2000, pattern=rf"^https?://[^{BLANK}]+$")] | None = (
        Field(
            default=None,
            description="where a worker who is done is sent, e.g. https://app.prolific.com/submissions/complete?cc=CODE",
        )
    )
    completion_code: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")] | None = Field(
        default=None, description="the code to show (e.g. the one the panel expects); a random one if left out"
    )


class PanelParameters(BaseModel):
    """The query parameters the panel added to the link, passed on by the web UI as they came."""

    model_config = ConfigDict(extra="forbid")
    prolific_pid: PanelId | None = Field(default=None, alias="PROLIFIC_PID")
    study_id: PanelId | None = Field(default=None, alias="STUDY_ID")
    session_id: PanelId | None = Field(default=None, alias="SESSION_ID")
    worker_id: PanelId | None = Field(default=None, alias="workerId")
    assignment_id: PanelId | None = Field(default=None, alias="assignmentId")
    hit_id: PanelId | None = Field(default=None, alias="hitId")
    turk_submit_to: Annotated[str, StringConstraints(pattern=MTURK_SUBMIT)] | None = Field(
        default=None, alias="turkSubmitTo"
    )
    worker: PanelId | None = None

    def sent(self) -> dict[str, str]:
        """The parameters given, by their panel names."""
        return {str(k): str(v) for k, v in self.model_dump(by_alias=True, exclude_none=True).items()}


class CreateInvitation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: (
        Annotated[
            str,
            StringConstraints(
                strip_whitespace=True, to_lower=True, max_length=320, pattern=rf"^[^@{BLANK}]+@[^@{BLANK}]+$"
            ),
        ]
        | None
    ) = Field(default=None, description="only the account with this email may accept it; anyone if left out")
    expires_in_hours: JsonFloat = Field(gt=0, le=MAX_INVITATION_HOURS, allow_inf_nan=False)


@dataclass(frozen=True)
class LinkProgress:
    link: StudyLink
    images: int

    @property
    def done(self) -> bool:
        return self.images >= self.link.quota

    @property
    def left(self) -> int:
        return max(0, self.link.quota - self.images)


@dataclass(frozen=True)
class LinkSession:
    """What opening a link gave: the worker and their account, or nothing (an MTurk preview)."""

    link: StudyLink
    task: Task
    worker: LinkWorker | None
    user: User | None
    created: bool
    images: int
    submit_to: str | None

    @property
    def progress(self) -> LinkProgress:
        return LinkProgress(self.link, self.images)


# ---- links ------------------------------------------------------------------------------------


async def create_link(store: Store, user: User, task_id: str, command: CreateLink) -> StudyLink:
    task = await managed_task(store, task_id, user)
    fields: dict[str, Any] = {"task_id": task.id, "created_by": user.id, "kind": command.kind, "quota": command.quota}
    if command.completion_url is not None:
        fields["completion_url"] = command.completion_url
    if command.completion_code is not None:
        fields["completion_code"] = command.completion_code
    link = StudyLink(**fields)
    await store.links.add(link)
    return link


async def links_of(store: Store, user: User, task_id: str, *, limit: int, after: Key | None) -> Page[StudyLink]:
    task = await managed_task(store, task_id, user)
    return await store.links.page_for_task(task.id, limit=limit, after=after)


async def revoke_link(store: Store, user: User, task_id: str, link_id: str, now: datetime) -> StudyLink:
    task = await managed_task(store, task_id, user)
    link = await store.links.get(link_id)
    if link is None or link.task_id != task.id:
        raise NotFound(f"study link {link_id} not found")
    revoked = await store.links.revoke(link.id, now)
    if revoked is None:
        raise NotFound(f"study link {link_id} not found")
    return revoked


async def open_link_of(store: Store, link_id: str) -> tuple[StudyLink, Task]:
    """A link that may be opened, and its task: 404 for an unknown one, 410 for a revoked one."""
    link = await store.links.get(link_id)
    if link is None:
        raise NotFound("no such study link; check the address the study gave you")
    if link.revoked_at is not None:
        raise Gone("this study link has been closed by the researcher")
    task = await store.tasks.get(link.task_id)
    if task is None or task.status is TaskStatus.DRAFT:
        raise NotFound("no such study link; check the address the study gave you")
    return link, task


def _external_identity(link: StudyLink, parameters: PanelParameters) -> tuple[str | None, dict[str, str]]:
    """The worker's external id (None: an MTurk preview) and the panel's other ids, from the parameters
    the link's kind calls for; :class:`InvalidInput` when they are missing or another panel's."""
    sent = parameters.sent()
    id_name, others = PANEL_PARAMETERS[link.kind]
    expected = {id_name, *others} | ({"turkSubmitTo"} if link.kind is LinkKind.MTURK else set())
    foreign = sorted(set(sent) - expected)
    wanted = ", ".join([id_name, *others])
    if foreign:
        raise InvalidInput(
            f"this is {PANEL_NAMES[link.kind]} study link: it is opened with {wanted}, not {', '.join(foreign)}"
        )
    if link.kind is LinkKind.MTURK and sent.get("assignmentId") == MTURK_PREVIEW:
        return None, sent
    missing = [name for name in (id_name, *others) if name not in sent]
    if missing:
        raise InvalidInput(
            f"the study link was opened without {', '.join(missing)}: open it from the study's page "
            f"(the panel adds {wanted} to the address)"
        )
    return sent[id_name], sent


async def open_link(store: Store, link_id: str, parameters: PanelParameters) -> LinkSession:
    """Sign a panel's worker in: their worker record and account, made on the first visit and found
    again on every later one (also when several first visits race)."""
    link, task = await open_link_of(store, link_id)
    external_id, sent = _external_identity(link, parameters)
    submit_to = sent.get("turkSubmitTo")
    if external_id is None:
        return LinkSession(link, task, None, None, created=False, images=0, submit_to=submit_to)
    candidate = LinkWorker(
        id=LinkWorker.key(link.id, external_id),
        link_id=link.id,
        task_id=link.task_id,
        kind=link.kind,
        external_id=external_id,
        user_id=new_id(),
        study_id=sent.get("STUDY_ID"),
        session_id=sent.get("SESSION_ID"),
        assignment_id=sent.get("assignmentId"),
        hit_id=sent.get("hitId"),
    )
    worker, created = await store.link_workers.add(candidate)
    user = await _account_of(store, worker)
    images = len(await _submissions(store, user.id, link.task_id))
    return LinkSession(link, task, worker, user, created=created, images=images, submit_to=submit_to)


async def _account_of(store: Store, worker: LinkWorker) -> User:
    """The worker's account; every visit makes sure it exists (the visit that won the worker record
    may not have made it yet), and the account's unique id lets only one be stored."""
    user = await store.users.get(worker.user_id)
    if user is not None:
        return user
    account = User(
        id=worker.user_id,
        email=f"{worker.user_id}@{LINK_EMAIL_DOMAIN}",
        name=f"{worker.kind.value} {worker.external_id}"[:120],
        password_hash=NO_PASSWORD,
        roles=[Role.ANNOTATOR],
        link_id=worker.link_id,
        link_task_id=worker.task_id,
    )
    try:
        return await store.users.add(account)
    except Conflict:
        stored = await store.users.get(worker.user_id)
        if stored is None:
            raise Unavailable("the worker's account is being made; retry") from None
        return stored


async def _submissions(store: Store, user_id: str, task_id: str) -> list[Submission]:
    """The user's submissions on the task (a link's worker has at most about its quota)."""
    return [s for s in await store.submissions.list_for_user(user_id) if s.task_id == task_id]


async def progress_of(store: Store, user: User, link_id: str) -> LinkProgress:
    """How far the signed-in link worker is; their link only (404 for anyone else)."""
    if user.link_id != link_id:
        raise NotFound(f"study link {link_id} not found")
    link = await store.links.get(link_id)
    if link is None:
        raise NotFound(f"study link {link_id} not found")
    return LinkProgress(link, len(await _submissions(store, user.id, link.task_id)))


async def quota_state(store: Store, user: User) -> LinkProgress | None:
    """A link worker's progress before handing them an image (None for everyone else); a revoked link
    hands out no more images (409)."""
    if user.link_id is None:
        return None
    link = await store.links.get(user.link_id)
    if link is None or link.revoked_at is not None:
        raise Conflict("this study link has been closed by the researcher")
    return LinkProgress(link, len(await _submissions(store, user.id, link.task_id)))


# ---- the ledger -------------------------------------------------------------------------------


async def ledger_csv(store: Store, task: Task) -> AsyncIterator[bytes]:
    """Every worker of every link of the task, as CSV, a page of workers at a time."""
    yield csv_bytes([], LEDGER_COLUMNS)
    quotas: dict[str, int] = {}
    after: Key | None = None
    while True:
        page = await store.link_workers.page_for_task(task.id, limit=LEDGER_PAGE, after=after)
        rows = []
        for worker in page.items:
            if worker.link_id not in quotas:
                link = await store.links.get(worker.link_id)
                quotas[worker.link_id] = link.quota if link is not None else 0
            submissions = await _submissions(store, worker.user_id, task.id)
            seconds = sum(s.duration_ms or 0 for s in submissions) / 1000
            last = max([worker.created_at, *(s.created_at for s in submissions)])
            rows.append(
                {
                    "external_id": worker.external_id,
                    "kind": worker.kind.value,
                    "images": len(submissions),
                    "seconds": round(seconds, 3),
                    "first_at": json_time(worker.created_at),
                    "last_at": json_time(last),
                    "link_id": worker.link_id,
                    "completed": str(len(submissions) >= quotas[worker.link_id]).lower(),
                }
            )
        yield csv_bytes(rows, LEDGER_COLUMNS, header=False)
        if page.next_after is None:
            return
        after = page.next_after


# ---- invitations and members ------------------------------------------------------------------


async def create_invitation(
    store: Store, user: User, task_id: str, command: CreateInvitation, now: datetime
) -> Invitation:
    task = await managed_task(store, task_id, user)
    invitation = Invitation(
        task_id=task.id,
        created_by=user.id,
        email=command.email,
        expires_at=now + timedelta(hours=command.expires_in_hours),
        created_at=now,
    )
    await store.invitations.add(invitation)
    return invitation


async def invitations_of(store: Store, user: User, task_id: str, *, limit: int, after: Key | None) -> Page[Invitation]:
    task = await managed_task(store, task_id, user)
    return await store.invitations.page_for_task(task.id, limit=limit, after=after)


async def revoke_invitation(store: Store, user: User, task_id: str, invitation_id: str, now: datetime) -> Invitation:
    task = await managed_task(store, task_id, user)
    invitation = await store.invitations.get(invitation_id)
    if invitation is None or invitation.task_id != task.id:
        raise NotFound(f"invitation {invitation_id} not found")
    revoked = await store.invitations.revoke(invitation.id, now)
    if revoked is None:
        raise NotFound(f"invitation {invitation_id} not found")
    return revoked


async def accept_invitation(store: Store, user: User, invitation_id: str, now: datetime) -> Task:
    """Make the signed-in user a member of the invitation's task."""
    invitation = await store.invitations.get(invitation_id)
    if invitation is None:
        raise NotFound("no such invitation; check the address you were sent")
    if invitation.revoked_at is not None:
        raise Gone("this invitation has been withdrawn; ask the task's owner for a new one")
    if invitation.expires_at <= now:
        raise Gone(f"this invitation expired at {json_time(invitation.expires_at)}; ask the task's owner for a new one")
    if invitation.email is not None and invitation.email != user.email:
        raise Forbidden("this invitation is for another account; sign in with the address it was sent to")
    if user.link_task_id is not None:
        raise Forbidden("a study link's account cannot join other tasks")
    task = await store.tasks.get(invitation.task_id)
    if task is None:
        raise NotFound("no such invitation; check the address you were sent")
    await store.tasks.add_member(task.id, user.id)
    await store.invitations.accepted(invitation.id, user.id)
    stored = await store.tasks.get(task.id)
    return stored or task
