"""Composition root of the annotate service."""

from crowdseg.composition import ServiceParts, build_app
from crowdseg.runtime import Runtime
from crowdseg.services.annotate import entrypoints, handlers
from crowdseg.settings import AnnotateSettings, load_settings
from fastapi import FastAPI


async def reconcile_coverage(runtime: Runtime) -> None:
    await handlers.reconcile_coverage(runtime.store)


PARTS = ServiceParts(name="annotate", routers=[entrypoints.router], on_start=[reconcile_coverage], hot_routes=True)


def create_app(settings: AnnotateSettings | None = None) -> FastAPI:
    return build_app("crowdseg annotate", [PARTS], settings or load_settings(AnnotateSettings))
