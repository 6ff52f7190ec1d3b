"""The provider registry the gateway runs on: the file (`registry_file`) resolved — keys, URLs,
defaults — or the legacy and DeepSeek fallbacks when there is no file.

The registry is the single source of provider identity. Loading is pure apart from
reading the file; the result is immutable and swapped whole (see `RegistryBox`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from pydantic import (
    SecretStr,
    ValidationError,
)

from gateway.fleet.pool_spec import DEFAULT_AUTO_POOL_PREFIX, POOL_PREFIX, Pool, build_pools
from gateway.fleet.registry_file import ProviderKind as ProviderKind  # (re-exported: its users)
from gateway.fleet.registry_file import ProviderSpec, RegistryFile, asks_stream_usage

DEFAULT_DEEPSEEK_BASE_URL = "https://api.deepseek.com"
DEFAULT_LEGACY_URL = "http://127.0.0.1:8080"


class RegistryError(Exception):
    """The registry file is unusable. `str()` names the file and each offending field path."""


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider as the gateway uses it: key resolved, URLs normalised."""

    id: str
    label: str
    kind: ProviderKind
    base_url: str
    sidecar_url: str | None = None
    anthropic_base_url: str | None = None  # where /v1/messages lives, when not the default
    api_key: SecretStr | None = field(default=None, repr=False)
    max_concurrent: int | None = None  # None: no limit (in-flight still counted)
    max_queue: int = 64
    queue_timeout_s: float = 300.0
    first_byte_timeout_s: float | None = None  # None: GATEWAY_FIRST_BYTE_TIMEOUT_S
    stream_usage: bool = False  # add include_usage to streams that did not ask (usage/asked.py)

    def key_headers(self, *, anthropic: bool = False) -> dict[str, str]:
        """The headers carrying this provider's own key (secret: never log): Authorization, and
        for the Anthropic Messages API x-api-key too (Anthropic-style servers read either)."""
        if self.api_key is None:
            return {}
        key = self.api_key.get_secret_value()
        if anthropic:
            return {"x-api-key": key, "Authorization": f"Bearer {key}"}
        return {"Authorization": f"Bearer {key}"}

    @property
    def inference_base(self) -> str:
        """Where inference POSTs go: the provider's own sidecar when it has one."""
        return self.sidecar_url or self.base_url

    @property
    def messages_base(self) -> str | None:
        """Where the Anthropic Messages API (`/v1/messages`) lives: `anthropicBaseUrl` when set;
        else llama-swap / llama-server serve it beside the OpenAI routes, DeepSeek under
        `/anthropic`; a generic cloud (`openai`) has none."""
        if self.anthropic_base_url is not None:
            return self.anthropic_base_url
        if self.kind.is_local:
            return self.inference_base
        if self.kind is ProviderKind.DEEPSEEK:
            return self.base_url + "/anthropic"
        return None


@dataclass(frozen=True, slots=True)
class Registry:
    providers: Mapping[str, Provider]  # registry order
    default_provider: str
    source: str  # the file path, or "environment" for the legacy fallback
    configured: bool = True  # False when nothing at all was configured
    warnings: tuple[str, ...] = ()
    pools: Mapping[str, Pool] = field(default_factory=dict)  # by name
    auto_pool_prefix: str = DEFAULT_AUTO_POOL_PREFIX

    @property
    def default(self) -> Provider:
        return self.providers[self.default_provider]


class RegistryBox:
    """Holds the current registry; a reload swaps it whole, in-flight requests keep theirs."""

    __slots__ = ("current",)

    def __init__(self, registry: Registry) -> None:
        self.current = registry


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(file)"


def _format_validation(source: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False):
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{_field_path(err['loc'])}: {msg}")
    return f"{source}: " + "; ".join(lines)


def parse_registry(data: Any, source: str, env: Mapping[str, str]) -> Registry:
    """Validate decoded JSON `data` into a Registry (DeepSeek fallback applied)."""
    try:
        spec = RegistryFile.model_validate(data)
    except ValidationError as exc:
        raise RegistryError(_format_validation(source, exc)) from None
    if problems := spec.problems():
        raise RegistryError(f"{source}: " + "; ".join(problems))
    specs = list(spec.providers)
    default = spec.default_provider or specs[0].id
    registry = _build(specs, default, source, env, configured=True)
    problems = []
    if spec.auto_pool_prefix in registry.providers and spec.auto_pool_prefix not in {
        p.id for p in specs
    }:  # the DeepSeek provider added from DEEPSEEK_API_KEY
        problems.append(f"autoPoolPrefix: {spec.auto_pool_prefix!r} is also a provider id")
    pools, found = build_pools(spec.pools, list(registry.providers))
    problems += found
    if problems:
        raise RegistryError(f"{source}: " + "; ".join(problems))
    return replace(registry, pools=pools, auto_pool_prefix=spec.auto_pool_prefix)


def load_registry(path: Path, env: Mapping[str, str]) -> Registry:
    """Load the registry file at `path`, or synthesize the legacy provider when it is absent."""
    if path.exists():
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise RegistryError(f"{path}: cannot read: {exc.strerror}") from None
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise RegistryError(f"{path}: not valid JSON: {exc}") from None
        return parse_registry(data, str(path), env)
    return _legacy(env)


def _legacy(env: Mapping[str, str]) -> Registry:
    url = env.get("LLAMA_SWAP_URL", "").strip()
    provider_id = env.get("LLAMA_PROVIDER_ID", "").strip() or "local"
    if provider_id in (POOL_PREFIX, DEFAULT_AUTO_POOL_PREFIX):
        raise RegistryError(
            f"LLAMA_PROVIDER_ID: {provider_id!r} is reserved for pools (pool/<name>, any/<model>)"
        )
    data: dict[str, Any] = {
        "id": provider_id,
        "label": "Local llama-swap",
        "baseUrl": url or DEFAULT_LEGACY_URL,
        "kind": "llama-swap",
    }
    if sidecar := env.get("LLAMA_SIDECAR_URL", "").strip():
        data["sidecarUrl"] = sidecar
    try:
        spec = ProviderSpec.model_validate(data)
    except ValidationError as exc:
        msg = _format_validation("environment", exc)
        for field_name, var in (
            ("baseUrl", "LLAMA_SWAP_URL"),
            ("sidecarUrl", "LLAMA_SIDECAR_URL"),
            ("id", "LLAMA_PROVIDER_ID"),
        ):
            msg = msg.replace(f"{field_name}:", f"{var}:")
        raise RegistryError(msg) from None
    registry = _build([spec], spec.id, "environment", env, configured=bool(url))
    if url:
        return registry
    return Registry(
        providers=registry.providers,
        default_provider=registry.default_provider,
        source=registry.source,
        configured=False,
        warnings=(
            "no registry file and no LLAMA_SWAP_URL: assuming a llama-server/llama-swap at "
            f"{DEFAULT_LEGACY_URL}; set LLAMA_SWAP_URL or write LLAMA_PROVIDERS_PATH "
            "(see config/llama-providers.example.json)",
            *registry.warnings,
        ),
    )


def _build(
    specs: list[ProviderSpec],
    default: str,
    source: str,
    env: Mapping[str, str],
    *,
    configured: bool,
) -> Registry:
    warnings: list[str] = []
    deepseek_key = env.get("DEEPSEEK_API_KEY", "").strip()
    if deepseek_key and not any(s.kind is ProviderKind.DEEPSEEK for s in specs):
        if any(s.id == "deepseek" for s in specs):
            warnings.append(
                "DEEPSEEK_API_KEY is set but id 'deepseek' is taken by a non-deepseek provider; "
                "the DeepSeek provider was not added"
            )
        else:
            base = env.get("DEEPSEEK_BASE_URL", "").strip() or DEFAULT_DEEPSEEK_BASE_URL
            try:
                specs.append(
                    ProviderSpec.model_validate(
                        {
                            "id": "deepseek",
                            "label": "DeepSeek",
                            "baseUrl": base,
                            "kind": "deepseek",
                            "apiKeyEnv": "DEEPSEEK_API_KEY",
                        }
                    )
                )
            except ValidationError as exc:
                raise RegistryError(
                    _format_validation("DEEPSEEK_BASE_URL", exc).replace("baseUrl: ", "")
                ) from None
    providers: dict[str, Provider] = {}
    problems: list[str] = []
    for i, spec in enumerate(specs):
        key = spec.api_key
        where = f"providers[{i}].apiKey"
        if spec.api_key_env is not None:
            where = f"providers[{i}].apiKeyEnv (${spec.api_key_env})"
            value = env.get(spec.api_key_env, "").strip()  # a trailing newline is not the key
            if value:
                key = SecretStr(value)
            else:
                warnings.append(
                    f"provider {spec.id!r}: ${spec.api_key_env} is not set; no key sent"
                )
        if key is not None and not _header_safe(key.get_secret_value()):
            problems.append(
                f"{where}: the key has a control character, a space at its ends, or a character "
                "a header cannot carry"
            )
        providers[spec.id] = Provider(
            id=spec.id,
            label=spec.label or spec.id,
            kind=spec.kind,
            base_url=spec.base_url,
            sidecar_url=spec.sidecar_url,
            anthropic_base_url=spec.anthropic_base_url,
            api_key=key,
            max_concurrent=spec.max_concurrent,
            max_queue=spec.max_queue,
            queue_timeout_s=spec.queue_timeout_s,
            first_byte_timeout_s=spec.first_byte_timeout_s,
            stream_usage=asks_stream_usage(spec)
            if spec.stream_usage is None
            else spec.stream_usage,
        )
    if problems:
        raise RegistryError(f"{source}: " + "; ".join(problems))
    return Registry(
        providers=providers,
        default_provider=default,
        source=source,
        configured=configured,
        warnings=tuple(warnings),
    )


def _header_safe(key: str) -> bool:
    """A key that can travel in a header line unchanged: no controls, no surrounding space."""
    if key != key.strip() or any(c < " " or c == "\x7f" for c in key):
        return False
    try:
        key.encode("latin-1")  # header values travel as latin-1
    except UnicodeEncodeError:
        return False
    return True
