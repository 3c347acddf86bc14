"""Composition root of the consensus service (one worker of the pool per process)."""

from crowdseg.composition import ServiceParts, build_app
from crowdseg.services.consensus import entrypoints
from crowdseg.settings import ConsensusSettings, load_settings
from fastapi import FastAPI

# The routes alone, for a process whose consensus is computed by worker processes (the embedded
# profile's main process): not named "consensus", so its relay leaves the workers' outboxes to them.
ROUTES = ServiceParts(name="consensus-routes", routers=[entrypoints.router])
PARTS = ServiceParts(
    name="consensus",
    routers=[entrypoints.router],
    subscribe=[entrypoints.subscribe],
    background_on_start=[entrypoints.reconcile_on_start],
)


def create_app(settings: ConsensusSettings | None = None) -> FastAPI:
    return build_app("crowdseg consensus", [PARTS], settings or load_settings(ConsensusSettings))
