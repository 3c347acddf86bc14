"""The AsyncAPI 3.0 document of the topics, as FastStream builds it, with what it cannot infer.

The consumers take the raw Kafka message (they validate and dead-letter it themselves), so FastStream
documents their payload as empty, ``{"type": "null"}``; and a dead-letter topic's publisher is
declared without a schema. Issue 9: every real ``submission.accepted`` failed the consumer side's
schema, and the dead-letter topics said nothing of their payload or headers. Here every consumer's
message gets its topic's event schema, and every dead-letter topic the events of its consumer group
and the headers :mod:`crowdseg.bus` sets.
"""

from __future__ import annotations

from typing import Any

from crowdseg.events import EVENT_TYPES, dead_letter_topic
from faststream.kafka import KafkaBroker
from faststream.specification import AsyncAPI
from pydantic.json_schema import models_json_schema

SCHEMAS = "#/components/schemas/"
DEAD_LETTER_HEADERS: dict[str, Any] = {
    "type": "object",
    "required": ["x-error", "x-original-topic", "x-consumer-group"],
    "properties": {
        "x-error": {
            "type": "string",
            "maxLength": 1000,
            "description": "why the event was set aside: the handler's last error after its retries, or "
            "`malformed event: ...` for a body that is not the topic's event (it is kept as received)",
        },
        "x-original-topic": {"type": "string", "description": "the topic the event was consumed from"},
        "x-consumer-group": {"type": "string", "description": "the consumer group that gave it up"},
    },
}


def asyncapi_document(broker: KafkaBroker) -> dict[str, Any]:
    spec: dict[str, Any] = AsyncAPI(broker, title="crowdseg events", version="1").to_specification().to_jsonable()
    components = spec.setdefault("components", {})
    schemas: dict[str, Any] = components.setdefault("schemas", {})
    messages: dict[str, Any] = components.setdefault("messages", {})
    _, definitions = models_json_schema(
        [(event_type, "validation") for event_type in EVENT_TYPES.values()],
        ref_template=SCHEMAS + "{model}",
    )
    for name, schema in definitions.get("$defs", {}).items():
        schemas.setdefault(name, schema)
    by_topic = {event_type.topic: event_type.__name__ for event_type in EVENT_TYPES.values()}

    consumed: dict[str, list[str]] = {}  # dead-letter topic → the event schemas its group consumes
    receiving = {
        op["channel"]["$ref"].rsplit("/", 1)[-1]
        for op in spec.get("operations", {}).values()
        if op.get("action") == "receive"
    }
    for channel_name in receiving:
        channel = spec["channels"][channel_name]
        topic, _, group = channel_name.partition(":")
        if (event := by_topic.get(topic)) is None:
            continue
        for ref in channel.get("messages", {}).values():
            message = messages[ref["$ref"].rsplit("/", 1)[-1]]
            message["payload"] = {"$ref": SCHEMAS + event}
        consumed.setdefault(dead_letter_topic(group), []).append(event)

    for channel in spec.get("channels", {}).values():
        events = consumed.get(channel.get("address", ""))
        if not events:
            continue
        for ref in channel.get("messages", {}).values():
            message = messages[ref["$ref"].rsplit("/", 1)[-1]]
            old = message.get("payload", {}).get("$ref", "").rsplit("/", 1)[-1]
            if old and old not in by_topic.values():
                schemas.pop(old, None)  # FastStream's empty placeholder
            refs = [{"$ref": SCHEMAS + name} for name in sorted(set(events))]
            message["payload"] = refs[0] if len(refs) == 1 else {"oneOf": refs}
            message["headers"] = DEAD_LETTER_HEADERS
            message["summary"] = "an event its consumer group gave up on, as it was received"
    if not _uses(spec, "EmptyPayload"):
        schemas.pop("EmptyPayload", None)
    return spec


def _uses(spec: dict[str, Any], schema: str) -> bool:
    target = SCHEMAS + schema
    return any(message.get("payload", {}).get("$ref") == target for message in spec["components"]["messages"].values())
