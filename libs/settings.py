"""Settings: one pydantic-settings class per service, all sharing the connection settings.

Read from ``CROWDSEG_*`` environment variables. Outside the embedded profile nothing unsafe is
accepted: a missing or default secret, a missing Kafka, MongoDB or S3 setting fails at start.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from pathlib import Path
from typing import Self, TypeVar

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Profile(StrEnum):
    EMBEDDED = "embedded"
    CLUSTER = "cluster"


UNSAFE_SECRETS = {"", "change-me", "secret", "changeme", "crowdseg"}


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CROWDSEG_", extra="ignore")

    profile: Profile = Profile.EMBEDDED
    data_dir: Path = Path("crowdseg-data")
    secret_key: SecretStr = SecretStr("")
    kafka_bootstrap_servers: str = ""
    kafka_partitions: int = Field(default=4, ge=1)
    mongodb_url: SecretStr = SecretStr("")
    mongodb_database: str = "crowdseg"
    # Whether the MongoDB server applies a filtered single-document update atomically: true (MongoDB)
    # makes the store's read-modify-write a plain compare-and-set; false (FerretDB v1) adds a guard
    # document per write; unset asks the server (FerretDB says so in buildInfo).
    mongodb_atomic_updates: bool | None = None
    s3_endpoint: str = ""
    s3_access_key: str = ""
    s3_secret_key: SecretStr = SecretStr("")
    s3_bucket: str = "crowdseg"
    s3_secure: bool = False
    token_minutes: int = Field(default=12 * 60, ge=1)
    public_url: str = Field(
        default="",
        description="the address users reach the web UI at (e.g. `https://crowdseg.example.org`), for the study "
        "links and invitations handed out; unset, the address the request came to (`X-Forwarded-Host`/`-Proto` "
        "included)",
    )
    cookie_secure: bool = False
    consumer_max_attempts: int = Field(default=5, ge=1)
    consumer_backoff_seconds: float = Field(default=0.2, ge=0)
    outbox_poll_seconds: float = Field(default=1.0, gt=0)
    # Request bodies other than multipart uploads (JSON): larger ones answer 413 before they are parsed.
    max_json_bytes: int = Field(default=32 * 2**20, ge=1024)
    log_level: str = "INFO"
    # Log every event a consumer takes and finishes ("Received"/"Processed"); off by default, since at
    # hundreds of events a second those lines are most of the log and a good share of the CPU.
    log_events: bool = False

    @model_validator(mode="after")
    def _fail_fast_outside_embedded(self) -> Self:
        if self.profile is Profile.EMBEDDED:
            return self
        missing = [
            name
            for name, value in (
                ("CROWDSEG_KAFKA_BOOTSTRAP_SERVERS", self.kafka_bootstrap_servers),
                ("CROWDSEG_MONGODB_URL", self.mongodb_url.get_secret_value()),
                ("CROWDSEG_S3_ENDPOINT", self.s3_endpoint),
                ("CROWDSEG_S3_ACCESS_KEY", self.s3_access_key),
                ("CROWDSEG_S3_SECRET_KEY", self.s3_secret_key.get_secret_value()),
            )
            if not value
        ]
        if missing:
            raise ValueError(f"the cluster profile needs {', '.join(missing)}")
        secret = self.secret_key.get_secret_value()
        if secret.lower() in UNSAFE_SECRETS or len(secret) < 32:
            raise ValueError("CROWDSEG_SECRET_KEY must be set to a random value of at least 32 characters")
        return self

    def signing_key(self) -> str:
        return self.secret_key.get_secret_value()

    def with_embedded_secret(self) -> Self:
        """The embedded profile keeps a random secret in its data directory across restarts."""
        if self.profile is not Profile.EMBEDDED or self.secret_key.get_secret_value():
            return self
        path = self.data_dir / "secret.key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_urlsafe(48))
            path.chmod(0o600)
        return self.model_copy(update={"secret_key": SecretStr(path.read_text().strip())})


class IngestSettings(CommonSettings):
    max_upload_bytes: int = 512 * 2**20
    max_image_bytes: int = 64 * 2**20
    max_image_pixels: int = 40_000_000
    # Tutorial references are shapes too (issue 9: without it the cluster's ingest answered every
    # tutorial upload with a 500).
    max_points_per_shape: int = 20_000


class AssignSettings(CommonSettings):
    pass


class AnnotateSettings(CommonSettings):
    max_points_per_shape: int = 20_000


class ConsensusSettings(CommonSettings):
    # Expert references (PUT /images/{id}/reference) are validated as submissions are.
    max_points_per_shape: int = 20_000
    staple_max_iter: int = 100
    staple_tol: float = 1e-7
    # Images of a batch this process computes at once: compute runs in worker threads, so one image's
    # STAPLE overlaps another's store reads.
    consensus_workers: int = Field(default=2, ge=1, le=64)
    # Events one consensus process takes at once (what has arrived, up to this many): their images are
    # recomputed together, each once, and their blobs written and synced together (issue 8).
    consensus_batch: int = Field(default=64, ge=1, le=1000)
    # How often a worker looks again for images whose consensus lags (from its watermark; see
    # crowdseg.watermark): events already bring every submission, this only catches what they missed.
    reconcile_seconds: float = Field(default=300.0, gt=0)


class ExportSettings(CommonSettings):
    pass


class GatewaySettings(IngestSettings, AnnotateSettings, ConsensusSettings, ExportSettings):
    """The gateway hosts every service in the embedded profile, so it carries all their settings."""

    host: str = "127.0.0.1"
    port: int = 8000
    web_dir: Path | None = None
    service_urls: dict[str, str] = Field(default_factory=dict)
    # Failed sign-ins allowed per account email and per client address in a moving window (the
    # `limits` package's notation); past them /auth/login answers 429 with Retry-After.
    login_failures_per_email: str = Field(default="10/15 minutes", pattern=r"^\d+ ?(/|per) ?\d* ?[a-z]+$")
    login_failures_per_address: str = Field(default="100/15 minutes", pattern=r"^\d+ ?(/|per) ?\d* ?[a-z]+$")
    # Embedded profile: consensus computed in this many worker processes of its own (0: in the main
    # process). One Python process runs Python code on one core at a time; with the worker, the
    # request path and consensus each get one.
    consensus_processes: int = Field(default=1, ge=0, le=8)
    # Their CPU priority below the main process (nice(2) increment): on a busy machine the requests go
    # first and consensus takes what is left (issue 8: with three raters per image, 10 halved the p99
    # of `next` and of submit at 200 submissions/s and consensus trailed as closely).
    consensus_niceness: int = Field(default=10, ge=0, le=19)


S = TypeVar("S", bound=CommonSettings)


def load_settings(cls: type[S], **overrides: object) -> S:
    """Build a service's settings from the environment and explicit overrides; fails fast."""
    settings = cls(**overrides)  # type: ignore[arg-type]
    return settings.with_embedded_secret()
