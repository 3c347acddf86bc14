"""Composition: a service is routers + subscribers + start-up hooks; apps are built from them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from crowdseg.http import create_app
from crowdseg.runtime import Runtime
from crowdseg.settings import CommonSettings
from fastapi import APIRouter, FastAPI

log = logging.getLogger(__name__)

Hook = Callable[[Runtime], Awaitable[None]]


@dataclass(frozen=True)
class ServiceParts:
    name: str
    routers: Sequence[Callable[[], APIRouter]]
    subscribe: Sequence[Callable[[Runtime], None]] = ()
    on_start: Sequence[Hook] = ()
    background_on_start: Sequence[Hook] = field(default_factory=tuple)
    hot_routes: bool = False
    """Routes answered hundreds of times a second (the work path): matched before every other service's.
    Starlette tries routes one by one, and ``next`` came after some thirty others (issue 8)."""


def build_app(
    title: str, parts: Sequence[ServiceParts], settings: CommonSettings, *, runtime: Runtime | None = None
) -> FastAPI:
    """One FastAPI app hosting the given services on one runtime (one broker, one store)."""
    runtime = runtime or Runtime.build(settings)
    runtime.relay.services = frozenset(part.name for part in parts)
    for part in parts:
        for subscribe in part.subscribe:
            subscribe(runtime)

    async def start_hooks(rt: Runtime) -> None:
        for part in parts:
            for hook in part.on_start:
                await hook(rt)
            for hook in part.background_on_start:
                rt.background.append(asyncio.create_task(_guarded(hook, rt, part.name)))

    ordered = sorted(parts, key=lambda part: not part.hot_routes)  # stable: the others keep their order
    routers = [make() for part in ordered for make in part.routers]
    return create_app(title=title, runtime=runtime, routers=routers, on_start=[start_hooks])


async def _guarded(hook: Hook, runtime: Runtime, name: str) -> None:
    try:
        await hook(runtime)
    except Exception:
        log.exception("start-up work of %s failed", name)
