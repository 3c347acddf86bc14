"""Composition root of the ingest service."""

from crowdseg.composition import ServiceParts, build_app
from crowdseg.services.ingest import entrypoints
from crowdseg.settings import IngestSettings, load_settings
from fastapi import FastAPI

PARTS = ServiceParts(name="ingest", routers=[entrypoints.router])


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    return build_app("crowdseg ingest", [PARTS], settings or load_settings(IngestSettings))
