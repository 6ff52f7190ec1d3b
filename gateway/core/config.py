"""Process settings from the environment (flags override). Declared once: the table drives the
CLI help, the README's env table (a test keeps them in step) and the defaults."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConfigError(Exception):
    """A setting could not be parsed; the message names the variable."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    providers_path: Path = Field(
        Path("config/llama-providers.json"),
        description="Provider registry file (JSON).",
        json_schema_extra={"env": "LLAMA_PROVIDERS_PATH"},
    )
    host: str = Field(
        "127.0.0.1", description="Address to listen on.", json_schema_extra={"env": "GATEWAY_HOST"}
    )
    port: int = Field(
        9502,
        ge=0,
        le=65535,
        description="Port to listen on.",
        json_schema_extra={"env": "GATEWAY_PORT"},
    )
    api_keys: tuple[str, ...] = Field(
        (),
        repr=False,
        description="Comma list of keys clients must send (Bearer or x-api-key), each "
        "optionally `label:key` (usage is recorded per label); empty = open.",
        json_schema_extra={"env": "GATEWAY_API_KEYS"},
    )
    database_url: str = Field(
        "",
        repr=False,
        description="PostgreSQL URL (postgresql://user:pass@host/db) for the state replicas "
        "share: settings, usage, learned facts, managed keys. Empty: SQLite files in "
        "GATEWAY_DATA_DIR.",
        json_schema_extra={"env": "GATEWAY_DATABASE_URL"},
    )
    keys_refresh_s: float = Field(
        5.0,
        gt=0,
        le=10,
        description="Seconds between re-reads of the managed keys (and their day's tokens) "
        "from the store; a revoked key is refused within this (plus a second).",
        json_schema_extra={"env": "GATEWAY_KEYS_REFRESH_S"},
    )
    data_dir: Path = Field(
        Path("data"),
        description="Directory for the gateway's own files.",
        json_schema_extra={"env": "GATEWAY_DATA_DIR"},
    )
    refresh_s: float = Field(
        300.0,
        gt=0,
        description="Seconds between model-catalog refreshes.",
        json_schema_extra={"env": "GATEWAY_REFRESH_S"},
    )
    log_format: Literal["json", "console"] = Field(
        "json", description="Log line format.", json_schema_extra={"env": "GATEWAY_LOG_FORMAT"}
    )
    connect_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Upstream connect timeout (502 past it).",
        json_schema_extra={"env": "GATEWAY_CONNECT_TIMEOUT_S"},
    )
    first_byte_timeout_s: float = Field(
        600.0,
        gt=0,
        description="Longest wait for an upstream's first byte: a model swap, or a whole "
        "non-streamed reply (504 past it). A provider's firstByteTimeoutS overrides it.",
        json_schema_extra={"env": "GATEWAY_FIRST_BYTE_TIMEOUT_S"},
    )
    idle_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Longest silence between chunks once a reply streams (then a final SSE "
        "error event). Streams have no total limit.",
        json_schema_extra={"env": "GATEWAY_IDLE_TIMEOUT_S"},
    )
    sse_keepalive_s: float = Field(
        15.0,
        ge=0,
        description="For stream:true requests, send ': keep-alive' SSE comments after this "
        "many seconds of upstream silence (0 = off).",
        json_schema_extra={"env": "GATEWAY_SSE_KEEPALIVE_S"},
    )
    usage_retention_days: float = Field(
        90.0,
        gt=0,
        le=36_500,
        description="Days of hourly usage history kept in $GATEWAY_DATA_DIR/usage.sqlite3.",
        json_schema_extra={"env": "GATEWAY_USAGE_RETENTION_DAYS"},
    )
    shutdown_grace_s: float = Field(
        30.0,
        ge=0,
        description="On SIGTERM, how long in-flight requests may finish before open streams "
        "are ended with a final error event.",
        json_schema_extra={"env": "GATEWAY_SHUTDOWN_GRACE_S"},
    )
    reload_poll_s: float = Field(
        2.0,
        ge=0,
        description="How often to check the registry file for changes (0 = only on SIGHUP).",
        json_schema_extra={"env": "GATEWAY_RELOAD_POLL_S"},
    )
    recent_requests: int = Field(
        1000,
        ge=0,
        le=100_000,
        description="Finished requests kept for GET /api/requests (a ring; memory bounded).",
        json_schema_extra={"env": "GATEWAY_RECENT_REQUESTS"},
    )
    capture: bool = Field(
        False,
        description="Keep the request body and the reply of the last GATEWAY_CAPTURE_COUNT "
        "requests (never a header that carries a credential), for GET /api/requests/{id}.",
        json_schema_extra={"env": "GATEWAY_CAPTURE"},
    )
    capture_count: int = Field(
        50,
        ge=1,
        le=10_000,
        description="With GATEWAY_CAPTURE: how many requests' captures are kept.",
        json_schema_extra={"env": "GATEWAY_CAPTURE_COUNT"},
    )
    capture_bytes: int = Field(
        65536,
        ge=1024,
        le=16 * 1024 * 1024,
        description="With GATEWAY_CAPTURE: the most bytes kept of one request's body, and of "
        "its reply (its first and last bytes when longer).",
        json_schema_extra={"env": "GATEWAY_CAPTURE_BYTES"},
    )
    offline_after_s: float = Field(
        900.0,
        gt=0,
        description="Seconds a provider that stopped answering stays 'stale' before 'offline'.",
        json_schema_extra={"env": "GATEWAY_OFFLINE_AFTER_S"},
    )
    models_timeout_s: float = Field(
        5.0,
        gt=0,
        description="Per-provider timeout for model-list requests.",
        json_schema_extra={"env": "GATEWAY_MODELS_TIMEOUT_S"},
    )
    body_timeout_s: float = Field(
        60.0,
        gt=0,
        description="Longest time a client may take to send its request body (408 past it).",
        json_schema_extra={"env": "GATEWAY_BODY_TIMEOUT_S"},
    )
    keepalive_timeout_s: float = Field(
        75.0,
        gt=0,
        description="Idle client connections, and clients that never finish sending their "
        "request headers, are closed after this many seconds.",
        json_schema_extra={"env": "GATEWAY_KEEPALIVE_TIMEOUT_S"},
    )
    head_timeout_s: float = Field(
        20.0,
        gt=0,
        description="Longest time a client may take to send its request headers, counted "
        "from the connect for a connection's first request, else from its first byte (408 "
        "past it; a connection that sent nothing is closed).",
        json_schema_extra={"env": "GATEWAY_HEAD_TIMEOUT_S"},
    )
    min_bytes_per_s: float = Field(
        500.0,
        ge=0,
        description="Slowest average rate at which request headers and bodies may arrive once "
        "GATEWAY_RATE_GRACE_S has passed (408 below it; 0 = no floor).",
        json_schema_extra={"env": "GATEWAY_MIN_BYTES_PER_S"},
    )
    rate_grace_s: float = Field(
        5.0,
        ge=0,
        description="Seconds a request's headers or body may lag behind "
        "GATEWAY_MIN_BYTES_PER_S; a new connection must send its first byte within them.",
        json_schema_extra={"env": "GATEWAY_RATE_GRACE_S"},
    )
    max_connections: int = Field(
        4096,
        ge=1,
        description="Most client connections at once; at the cap one that helps nobody is "
        "closed (already answered, the oldest unfinished request head, one silent for 1 s, "
        "then the one idle the longest), else a new one gets 503. Lowered to fit the "
        "process's file descriptor limit.",
        json_schema_extra={"env": "GATEWAY_MAX_CONNECTIONS"},
    )
    max_connections_per_client: int = Field(
        0,
        ge=0,
        description="Most connections from one client address; more get 429 (0 = no limit: "
        "behind a reverse proxy every client has its address).",
        json_schema_extra={"env": "GATEWAY_MAX_CONNECTIONS_PER_CLIENT"},
    )
    max_body_bytes: int = Field(
        32 * 1024 * 1024,
        gt=0,
        description="Largest request body accepted (413 past it).",
        json_schema_extra={"env": "GATEWAY_MAX_BODY_BYTES"},
    )

    sync: tuple[Literal["opencode", "pi"], ...] = Field(
        (),
        description="Agent configs to keep in sync with the fleet (comma list: opencode,pi).",
        json_schema_extra={"env": "GATEWAY_SYNC"},
    )

    @field_validator("api_keys", "sync", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(k.strip() for k in value.split(",") if k.strip())
        return value


# Read where they are used rather than by Settings: the registry's fallbacks, the demo, sync.
OTHER_ENV: dict[str, str] = {
    "LLAMA_SWAP_URL": "No registry file: the one llama-swap/llama-server to use.",
    "LLAMA_SIDECAR_URL": "No registry file: its sidecar.",
    "LLAMA_PROVIDER_ID": "No registry file: its provider id (default 'local').",
    "DEEPSEEK_API_KEY": "Adds provider 'deepseek' unless one is listed.",
    "DEEPSEEK_BASE_URL": "Its base URL (default https://api.deepseek.com).",
    "LLAMA_SERVER_PATH": "demo: run this llama-server instead of the prebuilt one.",
    "GATEWAY_URL": "sync: the gateway whose fleet to write (as --base-url).",
}


def env_names() -> dict[str, str]:
    """Setting name -> environment variable."""
    out: dict[str, str] = {}
    for name, field in Settings.model_fields.items():
        extra = field.json_schema_extra
        assert isinstance(extra, dict)
        out[name] = str(extra["env"])
    return out


def load_settings(env: Mapping[str, str], **overrides: Any) -> Settings:
    """Settings from `env`, then non-None `overrides` (command-line flags) on top."""
    raw: dict[str, Any] = {}
    for name, var in env_names().items():
        if env.get(var, "") != "":
            raw[name] = env[var]
    raw.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        names = env_names()
        lines = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            lines.append(f"{names.get(field, field)}: {err['msg']}")
        raise ConfigError("; ".join(lines)) from None
