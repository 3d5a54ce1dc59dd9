"""The one configuration object: every environment variable of SPEC §2, validated at start-up.

Nothing else in runway-relay reads ``os.environ``: the web app, the worker and the ``relay``
command each build one :class:`Settings` in their entry function and pass it down.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from receiver.store.engine import database_url as store_database_url

#: About three days of retries, in seconds between attempts (SPEC §2, Standard Webhooks'
#: "Deliverability and reliability" recommendation).
DEFAULT_RETRY_SCHEDULE: tuple[float, ...] = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)

INSTANCE_DIR = Path("instance")
#: Shortest ADMIN_TOKEN accepted in production: guessing it must stay hopeless even at the
#: rate the sign-in limiter allows (receiver/web/ratelimit.py).
MIN_ADMIN_TOKEN_LENGTH = 32

#: Variables that a PaaS sets in every process it runs, and the platform each one means. On
#: these hosts the disk is ephemeral and per process, so a SQLite file would give the web, the
#: worker and each release their own database: DATABASE_URL is required there.
PAAS_MARKERS: tuple[tuple[str, str], ...] = (
    ("dyno", "Heroku"),
    ("render", "Render"),
    ("fly_app_name", "Fly.io"),
    ("railway_environment", "Railway"),
)


class ConfigError(Exception):
    """Configuration is missing or invalid; the message names every bad variable."""


def _split_csv(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` as ``("bucket", "some/prefix/")``.

    :raises ValueError: not an ``s3://`` URL with a bucket.
    """
    if not url.startswith("s3://"):
        raise ValueError("not an s3:// URL")
    bucket, _, prefix = url[len("s3://") :].partition("/")
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ValueError(f"{bucket!r} is not an S3 bucket name")
    prefix = prefix.strip("/")
    return bucket, f"{prefix}/" if prefix else ""


class Settings(BaseSettings):
    """runway-relay's configuration, read from the environment once at start-up.

    Field names are the environment variable names (case-insensitive). Durations are seconds,
    sizes are bytes. Build it with :func:`load_settings` to get one readable error for every bad
    variable instead of a pydantic traceback.
    """

    model_config = SettingsConfigDict(
        env_file=None, case_sensitive=False, extra="ignore", frozen=True, populate_by_name=True
    )

    relay_env: Literal["production", "development", "test"] = Field(
        "production",
        description="production requires SECRET_KEY; development and test allow a generated one",
    )
    # Secrets (and a database URL, which may hold a password) are left out of repr(), so that
    # a settings object in a log line or a traceback shows none of them.
    secret_key: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="keys that sign/verify replyRef; first signs, all verify",
        repr=False,
    )
    database_url: str = Field(
        "", description="SQLAlchemy URL; empty means instance/relay.sqlite3", repr=False
    )
    useapi_token: str = Field("", repr=False)
    useapi_base_url: str = "https://api.useapi.net/v1/runwayml"
    useapi_account_email: str | None = Field(
        None,
        description="the useapi.net Runway account that uploads and generates (its email); "
        "the vendor requires it when several accounts are configured",
    )
    public_base_url: str = ""
    admin_token: str = Field("", repr=False)
    port: int = Field(8000, ge=1, le=65535)
    allow_private_urls: bool = False
    delivery_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: list(DEFAULT_RETRY_SCHEDULE)
    )
    delivery_timeout_seconds: float = Field(15.0, gt=0, le=300)
    delivery_concurrency: int = Field(16, ge=1, le=256, description="parallel sends per worker")
    subscriber_max_in_flight: int = Field(
        4, ge=1, le=256, description="default cap on one subscriber's concurrent deliveries"
    )
    subscriber_disable_after_seconds: float = Field(
        5 * 86400, gt=0, description="disable a subscriber that has only failed for this long"
    )
    secret_rotation_grace_seconds: float = Field(
        86400, ge=0, description="old subscriber secret keeps signing this long after rotation"
    )
    db_pool_size: int = Field(
        4, ge=1, le=100, description="PostgreSQL connections kept per process"
    )
    db_max_overflow: int = Field(
        2, ge=0, le=100, description="extra PostgreSQL connections per process under load"
    )
    worker_metrics_host: str = Field(
        "0.0.0.0",
        min_length=1,
        description="address WORKER_METRICS_PORT binds (0.0.0.0: every interface)",
    )
    worker_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="relay worker serves its own /metrics (bearer ADMIN_TOKEN) on this port",
    )
    max_content_length: int = Field(262144, ge=1024, le=64 * 1024 * 1024)
    reply_ref_max_age: float = Field(
        604800,
        gt=0,
        description="seconds a replyRef verifies: 7 days, what a task can take plus a margin",
    )
    verify_with_vendor: bool = False
    trusted_proxy_hops: int = Field(1, ge=0, le=10)
    log_format: Literal["json", "text"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    refused_log_size: int = Field(1000, ge=10, le=1_000_000)
    # Set by the platform, never by you: they tell runway-relay it runs on a PaaS.
    dyno: str = Field("", description="Heroku: the dyno's name (web.1, worker.1, release.…)")
    render: str = Field("", description="Render: true in every service")
    fly_app_name: str = Field("", description="Fly.io: the app's name")
    railway_environment: str = Field("", description="Railway: the environment's name")
    # Retention (receiver/store/retention.py): finished work older than this is purged.
    retention_days: int = Field(
        30, ge=1, le=3650, description="finished work older than this many days is purged"
    )
    retention_purge_interval_seconds: float = Field(
        600, gt=0, le=86400, description="how often relay worker runs the retention purge"
    )
    # ARTIFACT_STORE (receiver/artifacts.py): durable copies of succeeded videos.
    artifact_store: str = Field(
        "", description="a directory or s3://bucket/prefix where succeeded videos are copied"
    )
    artifact_s3_endpoint_url: str = Field(
        "", description="an S3-compatible service other than AWS (R2, B2, MinIO, …)"
    )
    artifact_max_bytes: int = Field(
        1 << 30, ge=1024, description="largest video copied to ARTIFACT_STORE, bytes"
    )

    # -- hostile clients (issue 16): deadlines, sessions, sign-in limits -------------------
    trust_forwarded_host: bool = Field(
        False,
        description="take Host and port from X-Forwarded-Host/-Port of the trusted hops "
        "(off: the Host header the server received)",
    )
    body_read_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=120,
        description="a request body must arrive whole within this; else 408 and the "
        "connection is closed (gunicorn's gevent worker)",
    )

    # -- the web's gunicorn (read by gunicorn.conf.py; gunicorn reads WEB_CONCURRENCY) -------
    web_connections: int = Field(
        1000,
        ge=1,
        le=100_000,
        description="connections one web worker process holds at once (gevent greenlets)",
    )
    access_log: bool = Field(
        False, description="1: gunicorn's access log (one line per request) on the web's output"
    )

    @field_validator("secret_key", "delivery_retry_schedule", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("delivery_retry_schedule")
    @classmethod
    def _schedule_non_negative(cls, value: list[float]) -> list[float]:
        if any(v < 0 for v in value):
            raise ValueError("every delay must be zero or more seconds")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        # Checked here so that start-up names DATABASE_URL; the rules are the store's.
        return store_database_url(value)

    @field_validator("useapi_account_email", mode="before")
    @classmethod
    def _account_email(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip() or None
        if isinstance(value, str) and not re.fullmatch(r"[^@\s,]+@[^@\s,]+\.[^@\s,]+", value):
            raise ValueError("must be one email address, e.g. me@example.com")
        return value

    @field_validator("useapi_base_url", "public_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if value and not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value

    @field_validator("secret_key")
    @classmethod
    def _key_strength(cls, value: list[str]) -> list[str]:
        for key in value:
            if len(key) < 16:
                raise ValueError(
                    "each key must be at least 16 characters (use: openssl rand -hex 32)"
                )
        return value

    @model_validator(mode="after")
    def _production_needs_a_key(self) -> Settings:
        platform = self.paas
        if platform and not self.database_url:
            # First, and alone: the one line a PaaS log shows for a process that will not start.
            raise ValueError(
                f"DATABASE_URL is required on {platform}: each process there has its own "
                "ephemeral disk, so a SQLite file would split web, worker and release into "
                "separate databases; attach PostgreSQL (it sets DATABASE_URL) or set it"
            )
        if self.relay_env == "production" and not self.secret_key:
            raise ValueError(
                "SECRET_KEY is required when RELAY_ENV=production "
                "(set it, or RELAY_ENV=development for local use)"
            )
        if self.artifact_store.startswith("s3://"):
            # boto3 is looked for, not imported: gunicorn's master loads the settings before its
            # gevent workers monkey-patch ssl, and boto3 imports urllib3, whose SSL contexts
            # made from the unpatched module then recurse forever (every https call a 500).
            try:
                parse_s3_url(self.artifact_store)
            except ValueError as exc:
                raise ValueError(f"ARTIFACT_STORE: {exc} (expected s3://bucket/prefix)") from None
            if importlib.util.find_spec("boto3") is None:
                raise ValueError(
                    "ARTIFACT_STORE=s3://… needs boto3: pip install 'runway-relay[s3]'"
                )
        if platform and self.artifact_store and not self.artifact_store.startswith("s3://"):
            # Same trap as SQLite: the worker would copy to its own disk, the web would serve
            # from another (404), and both disks vanish at the next restart.
            raise ValueError(
                f"ARTIFACT_STORE must be s3://bucket/prefix on {platform}: each process there "
                "has its own ephemeral disk, so the web could not serve what the worker copied "
                "to a directory"
            )
        if self.artifact_store and not self.public_base_url:
            raise ValueError(
                "ARTIFACT_STORE needs PUBLIC_BASE_URL (the durable URLs point at this receiver)"
            )
        if self.relay_env == "production" and self.allow_private_urls:
            raise ValueError(
                "ALLOW_PRIVATE_URLS is for development and tests only: it is refused when "
                "RELAY_ENV=production"
            )
        if (
            self.relay_env == "production"
            and self.admin_token
            and len(self.admin_token) < MIN_ADMIN_TOKEN_LENGTH
        ):
            raise ValueError(
                f"ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_LENGTH} characters when "
                "RELAY_ENV=production (use: openssl rand -hex 32)"
            )
        if self.verify_with_vendor and not self.useapi_token:
            raise ValueError("VERIFY_WITH_VENDOR=1 needs USEAPI_TOKEN to ask the vendor")
        return self

    @property
    def paas(self) -> str | None:
        """The platform this process runs on (``"Heroku (DYNO is set)"``…), or None."""
        for name, platform in PAAS_MARKERS:
            if getattr(self, name):
                return f"{platform} ({name.upper()} is set)"
        return None

    @property
    def is_dev(self) -> bool:
        """True in development and test mode."""
        return self.relay_env != "production"

    @property
    def effective_database_url(self) -> str:
        """``DATABASE_URL``, or a SQLite file ``instance/relay.sqlite3`` (created on demand)."""
        if self.database_url:
            return self.database_url
        INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{(INSTANCE_DIR / 'relay.sqlite3').resolve()}"

    @property
    def signing_keys(self) -> list[str]:
        """replyRef keys, first signs. In dev/test mode without SECRET_KEY, a key generated once
        and kept in ``instance/dev-secret-key`` so that web, worker and CLI agree."""
        if self.secret_key:
            return list(self.secret_key)
        path = INSTANCE_DIR / "dev-secret-key"
        if not path.exists():
            INSTANCE_DIR.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
        return [path.read_text().strip()]

    @property
    def reply_url(self) -> str:
        """``PUBLIC_BASE_URL`` + ``/callbacks/useapi``: the replyUrl given to the vendor.

        :raises ConfigError: when PUBLIC_BASE_URL is not set.
        """
        if not self.public_base_url:
            raise ConfigError("PUBLIC_BASE_URL is required to submit tasks (the receiver's URL)")
        return self.public_base_url + "/callbacks/useapi"


def load_settings(**overrides: object) -> Settings:
    """Read the environment (plus ``overrides``, by field name) into a :class:`Settings`.

    :raises ConfigError: naming each missing or invalid variable, never echoing a secret value;
        on one line when there is one problem, one line per problem otherwise.
    """
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for error in exc.errors(include_input=False, include_url=False):
            name = ".".join(str(p) for p in error["loc"]).upper()
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"  {name}: {message}" if name else f"  {message}")
        if len(lines) == 1:
            raise ConfigError("invalid configuration: " + lines[0].strip()) from None
        raise ConfigError("invalid configuration:\n" + "\n".join(lines)) from None
