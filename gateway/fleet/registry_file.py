"""The provider registry file as written: its schema, each entry's checks (pydantic names the
field path of a bad value), and the checks across entries (`RegistryFile.problems`).
`gateway.fleet.registry` turns a valid file into the `Registry` the gateway runs on."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import yarl
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    model_validator,
)

from gateway.fleet.pool_spec import DEFAULT_AUTO_POOL_PREFIX, POOL_PREFIX, PoolName, PoolSpec


class ProviderKind(StrEnum):
    """A local machine's kind is a hint only: what it is (llama-swap, a llama-server in router
    mode, a plain llama-server) is detected from its answers each refresh (catalog.py)."""

    LLAMA_SWAP = "llama-swap"  # also a plain llama-server or any OpenAI-compatible local server
    LLAMA_SERVER = "llama-server"  # llama.cpp's server: one model, or many in router mode
    DEEPSEEK = "deepseek"
    OPENAI = "openai"  # a generic cloud endpoint

    @property
    def is_local(self) -> bool:
        return self in (ProviderKind.LLAMA_SWAP, ProviderKind.LLAMA_SERVER)

    @property
    def is_cloud(self) -> bool:
        return not self.is_local


def _check_base_url(value: str) -> str:
    try:
        url = yarl.URL(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a URL: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError("must be an absolute http:// or https:// URL with a host")
    if url.query_string or url.fragment or url.user or url.password:
        raise ValueError("must not carry a query, fragment or credentials (use apiKey/apiKeyEnv)")
    if url.path.rstrip("/").endswith("/v1"):
        raise ValueError("drop the trailing /v1: the gateway appends /v1/... itself")
    return str(url).rstrip("/")


Url = Annotated[str, AfterValidator(_check_base_url)]
ProviderId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]*$", max_length=64)]


class ProviderSpec(BaseModel):
    """One provider entry as written in the file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    id: ProviderId
    label: str | None = None
    base_url: Url = Field(alias="baseUrl")
    kind: ProviderKind = ProviderKind.LLAMA_SWAP
    sidecar_url: Url | None = Field(None, alias="sidecarUrl")
    anthropic_base_url: Url | None = Field(None, alias="anthropicBaseUrl")
    api_key: SecretStr | None = Field(None, alias="apiKey")
    api_key_env: str | None = Field(None, alias="apiKeyEnv", min_length=1)
    max_concurrent: int | None = Field(None, alias="maxConcurrent", ge=1)
    max_queue: int = Field(64, alias="maxQueue", ge=0)
    queue_timeout_s: float = Field(300.0, alias="queueTimeoutS", gt=0)
    first_byte_timeout_s: float | None = Field(None, alias="firstByteTimeoutS", gt=0)
    # ask streams for their usage (stream_options.include_usage) when the client did not, and
    # take it back out of the reply; None: yes for DeepSeek's and OpenAI's own API
    stream_usage: bool | None = Field(None, alias="streamUsage", strict=True)

    @model_validator(mode="after")
    def _one_key_source(self) -> ProviderSpec:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("set apiKey or apiKeyEnv, not both")
        return self


def asks_stream_usage(spec: ProviderSpec) -> bool:
    """`streamUsage` unless the file says: on for the APIs known to take the flag (DeepSeek's,
    OpenAI's own); another OpenAI-compatible cloud may refuse it (a 400 for every stream)."""
    if spec.kind is ProviderKind.DEEPSEEK:
        return True
    return spec.kind is ProviderKind.OPENAI and yarl.URL(spec.base_url).host == "api.openai.com"


class RegistryFile(BaseModel):
    """The whole file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    default_provider: ProviderId | None = Field(None, alias="defaultProvider")
    providers: list[ProviderSpec] = Field(min_length=1)
    auto_pool_prefix: ProviderId = Field(DEFAULT_AUTO_POOL_PREFIX, alias="autoPoolPrefix")
    pools: dict[PoolName, PoolSpec] = Field(default_factory=dict)

    def problems(self) -> list[str]:
        """Cross-entry checks, each naming its field path."""
        out: list[str] = []
        seen: dict[str, int] = {}
        if self.auto_pool_prefix == POOL_PREFIX:
            out.append(f"autoPoolPrefix: {POOL_PREFIX!r} is the named pools' prefix (pool/<name>)")
        for i, spec in enumerate(self.providers):
            if spec.id in seen:
                out.append(
                    f"providers[{i}].id: duplicate provider id {spec.id!r} "
                    f"(first at providers[{seen[spec.id]}])"
                )
            if spec.id == POOL_PREFIX:
                out.append(
                    f"providers[{i}].id: {POOL_PREFIX!r} is reserved for named pools (pool/<name>)"
                )
            if spec.id == self.auto_pool_prefix:
                out.append(
                    f"providers[{i}].id: {spec.id!r} is the automatic pools' prefix "
                    f"({spec.id}/<model>); rename the provider or set autoPoolPrefix"
                )
            seen.setdefault(spec.id, i)
        if self.default_provider is not None and self.default_provider not in seen:
            out.append(
                f"defaultProvider: {self.default_provider!r} is not a listed provider "
                f"(listed: {', '.join(seen)})"
            )
        return out
