"""Composition roots of the gateway: accounts alone, or the embedded profile's whole platform."""

from __future__ import annotations

from crowdseg.composition import ServiceParts, build_app
from crowdseg.services.annotate.app import PARTS as ANNOTATE
from crowdseg.services.assign.app import PARTS as ASSIGN
from crowdseg.services.consensus.app import PARTS as CONSENSUS
from crowdseg.services.consensus.app import ROUTES as CONSENSUS_ROUTES
from crowdseg.services.export.app import PARTS as EXPORT
from crowdseg.services.gateway import entrypoints
from crowdseg.services.gateway.proxy import install_proxy
from crowdseg.services.gateway.web import mount_web
from crowdseg.services.ingest.app import PARTS as INGEST
from crowdseg.settings import GatewaySettings, Profile, load_settings
from fastapi import FastAPI

PARTS = ServiceParts(name="gateway", routers=[entrypoints.router])
EVERY_SERVICE = (PARTS, INGEST, ASSIGN, ANNOTATE, CONSENSUS, EXPORT)
ROUTED_SERVICES = (INGEST, ASSIGN, ANNOTATE, CONSENSUS, EXPORT)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    """Accounts and the web UI; in the cluster profile (or given service URLs) it routes the rest of the API."""
    settings = settings or load_settings(GatewaySettings)
    app = build_app("crowdseg gateway", [PARTS], settings)
    if settings.profile is Profile.CLUSTER or settings.service_urls:
        install_proxy(app, ROUTED_SERVICES, settings.service_urls)
    mount_web(app, settings.web_dir)
    return app


def create_embedded_app(settings: GatewaySettings) -> FastAPI:
    """Every service and the web UI in one app, on one broker connection and one store; with
    ``consensus_processes``, consensus is computed in worker processes and only answered here."""
    parts: tuple[ServiceParts, ...] = EVERY_SERVICE
    if settings.consensus_processes:
        parts = tuple(CONSENSUS_ROUTES if part is CONSENSUS else part for part in EVERY_SERVICE)
    app = build_app("crowdseg", parts, settings)
    mount_web(app, settings.web_dir)
    return app
