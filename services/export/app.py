"""Composition root of the export service."""

from crowdseg.composition import ServiceParts, build_app
from crowdseg.services.export import entrypoints
from crowdseg.settings import ExportSettings, load_settings
from fastapi import FastAPI

PARTS = ServiceParts(
    name="export",
    routers=[entrypoints.router],
    subscribe=[entrypoints.subscribe],
    background_on_start=[entrypoints.resume_on_start],
)


def create_app(settings: ExportSettings | None = None) -> FastAPI:
    return build_app("crowdseg export", [PARTS], settings or load_settings(ExportSettings))
