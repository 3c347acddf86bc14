"""Composition root of the assign service."""

from crowdseg.composition import ServiceParts, build_app
from crowdseg.services.assign import crowd_entrypoints, entrypoints
from crowdseg.settings import AssignSettings, load_settings
from fastapi import FastAPI

PARTS = ServiceParts(
    name="assign",
    routers=[entrypoints.router, crowd_entrypoints.router],
    subscribe=[entrypoints.subscribe],
    background_on_start=[entrypoints.listen_on_start],
    hot_routes=True,
)


def create_app(settings: AssignSettings | None = None) -> FastAPI:
    return build_app("crowdseg assign", [PARTS], settings or load_settings(AssignSettings))
