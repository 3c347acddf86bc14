"""MkDocs hooks: the parts of the docs that are generated from the code at build time, so they never go stale.

- ``reference/openapi.json`` and ``reference/asyncapi.json``: the documents the embedded platform serves,
  built from the same app (nothing is started: the app is only composed).
- ``<!-- crowdseg:NAME -->`` markers in a page are replaced by a table generated from the code: ``settings``
  (every ``CROWDSEG_*`` variable, from the pydantic-settings classes), ``task-fields`` (the body of
  ``POST /tasks``), ``topics`` (the AsyncAPI channels) and ``consensus-updated`` (the result event's fields).
  An unknown marker, or a setting without a description, fails the build.
- After the build, every page is checked to load nothing from another origin (the site works offline).
"""

from __future__ import annotations

import functools
import json
import re
import tempfile
from enum import Enum
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from pydantic import SecretStr
from pydantic.fields import FieldInfo

SCRATCH = tempfile.TemporaryDirectory(prefix="crowdseg-docs-")  # the app's data directory; it stays empty
MARKER = re.compile(r"<!--\s*crowdseg:([a-z-]+)\s*-->")

# What each setting means, for the settings that do not say it in their own `Field(description=...)`.
# A setting in neither place fails the build; so does an entry here for a setting that no longer exists.
SETTING_DESCRIPTIONS = {
    "profile": "`embedded` (`crowdseg up`: one process, embedded broker, SQLite and files) or `cluster` "
    "(`crowdseg serve SERVICE`: Apache Kafka, MongoDB, S3)",
    "data_dir": "embedded profile: the data directory (documents, files, logs, the generated secret key)",
    "secret_key": "signs the session tokens (HS256); cluster: required, random, at least 32 characters; "
    "embedded: generated once into `<data dir>/secret.key`. Changing it ends every session",
    "kafka_bootstrap_servers": "cluster: the Kafka bootstrap servers (`host:port,...`); `crowdseg up` sets it "
    "to its embedded broker",
    "kafka_partitions": "partitions of each topic when crowdseg first creates it; consensus scales out to at "
    "most this many consumers",
    "mongodb_url": "cluster: the MongoDB connection string (with `w=majority`)",
    "mongodb_database": "cluster: the MongoDB database",
    "mongodb_atomic_updates": "whether the server applies a filtered single-document update atomically: "
    "`true` (MongoDB) writes by compare-and-set, `false` (FerretDB v1) adds a guard document per write; unset "
    "asks the server at start",
    "s3_endpoint": "cluster: the S3/MinIO endpoint (`host:port`)",
    "s3_access_key": "cluster: the S3 access key",
    "s3_secret_key": "cluster: the S3 secret key",
    "s3_bucket": "cluster: the bucket that holds images, masks and exports",
    "s3_secure": "cluster: talk to S3 over HTTPS",
    "token_minutes": "lifetime of a session token (bearer and cookie)",
    "cookie_secure": "mark the session and CSRF cookies `Secure` (set it behind HTTPS)",
    "consumer_max_attempts": "attempts of an event handler before the event is dead-lettered to "
    "`crowdseg.dlq.<group>.v1`",
    "consumer_backoff_seconds": "pause between two attempts of an event handler",
    "outbox_poll_seconds": "how often the outbox relay looks for events to publish (it is also woken by writes)",
    "max_json_bytes": "largest JSON request body; a larger one answers 413 before it is parsed",
    "log_level": "log level (`DEBUG`, `INFO`, `WARNING`, ...)",
    "log_events": "log every event a consumer takes and finishes",
    "max_upload_bytes": "largest upload request (images and ZIP archives); checked after the credentials, "
    "before the body is read",
    "max_image_bytes": "largest single image file (also an entry of a ZIP)",
    "max_image_pixels": "largest image in pixels (width × height)",
    "max_points_per_shape": "most vertices in one shape of a submission, attempt or (tutorial or expert) reference",
    "staple_max_iter": "STAPLE: most EM iterations per image",
    "staple_tol": "STAPLE: convergence tolerance",
    "consensus_workers": "images of a batch one consensus process computes at once",
    "consensus_batch": "most events one consensus process takes at once; each image among them is recomputed "
    "once, with all its submissions",
    "reconcile_seconds": "how often consensus looks again for images whose consensus lags (from its watermark)",
    "host": "HTTP address (`crowdseg up --host`; `crowdseg serve` reads `CROWDSEG_HOST` too)",
    "port": "HTTP port (`crowdseg up --port`; `crowdseg serve` reads `CROWDSEG_PORT` too)",
    "web_dir": "the built web UI to serve (default: the one installed with crowdseg, or `web/dist`)",
    "service_urls": 'cluster gateway: JSON `{"ingest": "http://ingest:8000", "assign": ..., "annotate": ..., '
    '"consensus": ..., "export": ...}`; the gateway routes `/api/v1` to them',
    "login_failures_per_email": "failed sign-ins allowed per account email in a moving window "
    "(the `limits` package's notation); past it `/auth/login` answers 429",
    "login_failures_per_address": "failed sign-ins allowed per client address in a moving window",
    "consensus_processes": "embedded profile: consensus worker processes beside the main one (0: consensus "
    "runs in the main process)",
    "consensus_niceness": "embedded profile: how much lower the consensus workers' CPU priority is than the "
    "main process's (a nice(2) increment, 0–19): on a busy machine requests go first",
}


# ---- the documents the platform serves -----------------------------------------------------------


@functools.cache
def _app() -> Any:
    """The embedded platform's app, composed but not started (no broker, no store is opened)."""
    from crowdseg.services.gateway.app import create_embedded_app
    from crowdseg.settings import GatewaySettings

    return create_embedded_app(GatewaySettings(data_dir=Path(SCRATCH.name), consensus_processes=0))


@functools.cache
def openapi() -> dict[str, Any]:
    document: dict[str, Any] = _app().openapi()
    return document


@functools.cache
def asyncapi() -> dict[str, Any]:
    from crowdseg.asyncapi import asyncapi_document

    return asyncapi_document(_app().state.runtime.broker)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    for name, document in (("openapi.json", openapi()), ("asyncapi.json", asyncapi())):
        files.append(File.generated(config, f"reference/{name}", content=json.dumps(document, indent=2)))
    return files


# ---- generated tables -----------------------------------------------------------------------------


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in TABLES:
            raise PluginError(f"{page.file.src_uri}: unknown marker crowdseg:{name} (known: {', '.join(TABLES)})")
        return TABLES[name]()

    return MARKER.sub(replace, markdown)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, Enum):
        value = value.value
    if value is None or value == "":
        return "unset"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, dict):
        return f"`{json.dumps(value)}`"
    if isinstance(value, int) and value >= 2**20 and value % 2**20 == 0:
        return f"`{value}` ({value // 2**20} MiB)"
    return f"`{value}`"


def _kind(field: FieldInfo) -> str:
    annotation = field.annotation
    text = getattr(annotation, "__name__", None) or str(annotation)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " \\| ".join(f"`{member.value}`" for member in annotation)
    names = {"SecretStr": "secret", "str": "text", "int": "integer", "float": "number", "bool": "`true` \\| `false`"}
    if text in names:
        return names[text]
    if text == "Path" or "Path" in str(annotation):
        return "path"
    if "bool" in str(annotation) and "None" in str(annotation):
        return "`true` \\| `false` \\| unset"
    if "dict" in str(annotation):
        return "JSON object"
    return _cell(text)


def _number(value: object) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value:_}".replace("_", " ") if isinstance(value, int) else str(value)


def _limits(field: FieldInfo) -> str:
    words = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    parts = []
    for item in field.metadata:
        for attribute, symbol in words.items():
            if (value := getattr(item, attribute, None)) is not None:
                parts.append(f"{symbol} {_number(value)}")
        if (pattern := getattr(item, "pattern", None)) is not None:
            parts.append(f"like `{pattern}`")
    return ", ".join(parts)


def settings_table() -> str:
    """Every CROWDSEG_* variable of the pydantic-settings classes, and which services read it."""
    from crowdseg import settings

    services: dict[str, type[settings.CommonSettings]] = {
        "ingest": settings.IngestSettings,
        "assign": settings.AssignSettings,
        "annotate": settings.AnnotateSettings,
        "consensus": settings.ConsensusSettings,
        "export": settings.ExportSettings,
        "gateway": settings.GatewaySettings,
    }
    common = settings.CommonSettings.model_fields
    prefix = settings.CommonSettings.model_config.get("env_prefix", "")
    every = dict(common)
    for cls in services.values():
        every |= cls.model_fields
    undescribed = [name for name, field in every.items() if not field.description and name not in SETTING_DESCRIPTIONS]
    if undescribed:
        raise PluginError(f"docs/hooks.py: describe these settings: {', '.join(undescribed)}")
    stale = sorted(set(SETTING_DESCRIPTIONS) - set(every))
    if stale:
        raise PluginError(f"docs/hooks.py describes settings that no longer exist: {', '.join(stale)}")
    rows = ["| variable | read by | type | default | limits | what it does |", "|---|---|---|---|---|---|"]
    for name, field in every.items():
        if name in common:
            readers = "every service"
        else:
            # The gateway carries every service's settings: on the embedded profile it hosts them all.
            readers = ", ".join(service for service, cls in services.items() if name in cls.model_fields)
            also = " and `crowdseg up`" if readers == "gateway" else " (and `crowdseg up`)"
            readers = readers.replace(", gateway", "") + also
        description = field.description or SETTING_DESCRIPTIONS[name]
        rows.append(
            f"| `{prefix}{name.upper()}` | {readers} | {_kind(field)} | {_default(field)} | {_cell(_limits(field))} "
            f"| {_cell(description)} |"
        )
    return "\n".join(rows)


def _schema_type(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    if "$ref" in schema:
        target = schemas[schema["$ref"].rsplit("/", 1)[-1]]
        if "enum" in target:
            return " \\| ".join(f"`{value}`" for value in target["enum"])
        return schema["$ref"].rsplit("/", 1)[-1]
    if "const" in schema:
        return f"`{json.dumps(schema['const'])}`"
    if "anyOf" in schema:
        return " or ".join(_schema_type(option, schemas) for option in schema["anyOf"])
    return str(schema.get("type", "any"))


def _schema_limits(schema: dict[str, Any]) -> str:
    words = {"minimum": "≥", "exclusiveMinimum": ">", "maximum": "≤", "minLength": "length ≥", "maxLength": "length ≤"}
    return ", ".join(f"{symbol} {_number(schema[key])}" for key, symbol in words.items() if key in schema)


def _fields_table(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    required = schema.get("required", [])
    names = [*required, *(name for name in schema["properties"] if name not in required)]
    rows = ["| field | type | default | limits |", "|---|---|---|---|"]
    for name in names:
        field = schema["properties"][name]
        if name in required:
            default = "required"
        elif "default" in field:
            default = f"`{json.dumps(field['default'])}`"
        else:
            default = "generated"  # a default factory: a new id, the current time
        kind = _schema_type(field, schemas) + (f" ({field['format']})" if "format" in field else "")
        rows.append(f"| `{name}` | {kind} | {default} | {_schema_limits(field)} |")
    return "\n".join(rows)


def task_fields_table() -> str:
    """The body of POST /tasks as the OpenAPI document states it."""
    schemas = openapi()["components"]["schemas"]
    return _fields_table(schemas["CreateTask"], schemas)


def consensus_updated_table() -> str:
    schemas = asyncapi()["components"]["schemas"]
    return _fields_table(schemas["ConsensusUpdated"], schemas)


def topics_table() -> str:
    """Every topic of the AsyncAPI document: its payload and the consumer groups that read it."""
    document = asyncapi()
    payloads: dict[str, set[str]] = {}
    groups: dict[str, set[str]] = {}
    for operation in document["operations"].values():
        name: str = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        channel = document["channels"][name]
        address = channel["address"]
        payloads.setdefault(address, set())
        if operation["action"] == "receive":
            groups.setdefault(address, set()).add(name.partition(":")[2])
        for reference in channel.get("messages", {}).values():
            message = document["components"]["messages"][reference["$ref"].rsplit("/", 1)[-1]]
            payload = message.get("payload", {})
            payloads[address] |= {option["$ref"].rsplit("/", 1)[-1] for option in payload.get("oneOf", [payload])}
    rows = ["| topic | payload | read in crowdseg by |", "|---|---|---|"]
    for address in sorted(payloads):
        readers = ", ".join(f"`{group}`" for group in sorted(groups.get(address, ()))) or "none"
        rows.append(f"| `{address}` | {', '.join(sorted(payloads[address]))} | {readers} |")
    return "\n".join(rows)


TABLES = {
    "settings": settings_table,
    "task-fields": task_fields_table,
    "topics": topics_table,
    "consensus-updated": consensus_updated_table,
}


# ---- offline --------------------------------------------------------------------------------------

EXTERNAL = re.compile(
    r"""<(?:script|img|iframe|source|link)\b[^>]*?\b(?:src|href)=["']?((?:https?:)?//[^"'\s>]+)"""
    r"""|url\(\s*["']?((?:https?:)?//[^"')\s]+)""",
    re.IGNORECASE,
)
LOADING_LINK = re.compile(r"rel=[\"']?(stylesheet|preload|icon|modulepreload)", re.IGNORECASE)


def on_post_build(config: MkDocsConfig) -> None:
    """Nothing may load from another origin: the site is read offline (and from the wheel, one day)."""
    site = Path(config.site_dir)
    found = []
    for path in sorted(site.rglob("*")):
        if path.suffix not in {".html", ".css"}:
            continue
        for match in EXTERNAL.finditer(path.read_text(errors="replace")):
            tag = match.group(0)
            if tag.lower().startswith("<link") and not LOADING_LINK.search(tag):
                continue  # a canonical or alternate link names a page, it loads nothing
            found.append(f"{path.relative_to(site)}: {match.group(1) or match.group(2)}")
    if found:
        raise PluginError("the site loads from another origin:\n" + "\n".join(found[:20]))
