"""Prometheus metrics shared by every service (one registry per process)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUEST_SECONDS = Histogram("crowdseg_http_request_seconds", "HTTP request latency", ["method", "route", "status"])
EVENTS_CONSUMED = Counter("crowdseg_events_consumed_total", "Events handled successfully", ["topic", "group"])
EVENTS_FAILED = Counter("crowdseg_events_failed_total", "Event handler failures (each attempt)", ["topic", "group"])
EVENTS_DEAD_LETTERED = Counter(
    "crowdseg_events_dead_lettered_total", "Events sent to a dead-letter topic", ["topic", "group"]
)
EVENTS_PUBLISHED = Counter("crowdseg_events_published_total", "Events published by the outbox relay", ["topic"])
CONSUMER_LAG = Gauge("crowdseg_consumer_lag_messages", "Messages behind the partition end", ["topic", "group"])
EVENT_AGE_SECONDS = Histogram(
    "crowdseg_event_age_seconds", "Time from an event's occurrence to its handling", ["topic", "group"]
)
OUTBOX_PENDING = Gauge("crowdseg_outbox_pending", "Events waiting in document outboxes")
CONSENSUS_SECONDS = Histogram(
    "crowdseg_consensus_seconds",
    "Time to recompute one image's consensus",
    ["method"],
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
FULL_COLLECTION_SECONDS = Histogram(
    "crowdseg_full_collection_seconds",
    "Pauses of the garbage collector's full collections (crowdseg.heap)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1),
)
FROZEN_OBJECTS = Gauge("crowdseg_frozen_objects", "Objects moved out of the collector's reach (crowdseg.heap)")
