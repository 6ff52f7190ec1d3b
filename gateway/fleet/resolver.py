"""The single routing authority: composite model id in, `Route` out. Pure: no I/O.

Auth rules: a configured provider key wins; otherwise the client's Authorization
(or x-api-key, as Anthropic clients send it) is forwarded to local (llama-swap) providers only,
and never when the gateway itself checks keys.

The Anthropic Messages routes (`/v1/messages`, `/v1/messages/count_tokens`) go to the provider's
`messages_base`; a provider without one is a 400 naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.errors import GatewayError
from gateway.fleet import modelref
from gateway.fleet.pool_spec import POOL_PREFIX
from gateway.fleet.registry import Provider, Registry

ANTHROPIC_PATHS = frozenset({"/v1/messages", "/v1/messages/count_tokens"})


@dataclass(frozen=True, slots=True)
class Route:
    provider: Provider
    wire_model: str
    url: str  # the inference URL for the requested path
    headers: dict[str, str]  # upstream auth headers (secret: never log)

    @property
    def composite_id(self) -> str:
        return modelref.composite(self.provider.id, self.wire_model)


@dataclass(frozen=True, slots=True)
class PoolRef:
    """A model id that names a pool: `any/<wire>` (members: every online local machine whose
    catalog lists `wire`) or `pool/<name>` (members and fallback from the registry)."""

    id: str  # as the client wrote it
    wire: str | None = None  # any/<wire>
    members: tuple[str, ...] = ()  # pool/<name>: composite ids
    fallback: str | None = None


def pool_of(registry: Registry, model_id: str) -> PoolRef | None:
    """The pool `model_id` names, or None when it names a provider's model (see `resolve`)."""
    prefix, _, rest = model_id.partition("/")
    if prefix == registry.auto_pool_prefix:
        if not rest or not modelref.is_clean(model_id):
            raise GatewayError(
                400, "invalid_model", f"model {_quoted(model_id)} names no model after "
                f"{prefix}/", param="model",
            )  # fmt: skip
        return PoolRef(model_id, wire=rest)
    if prefix == POOL_PREFIX:
        pool = registry.pools.get(rest)
        if pool is None:
            known = ", ".join(p.id for p in registry.pools.values()) or "none"
            raise GatewayError(
                400,
                "model_not_found",
                f"unknown pool {_quoted(model_id)}; pools in the registry: {known}",
                param="model",
            )
        return PoolRef(model_id, members=pool.members, fallback=pool.fallback)
    return None


def resolve(
    registry: Registry,
    model_id: str,
    *,
    path: str = "/v1/chat/completions",
    client_authorization: str | None = None,
    client_api_key: str | None = None,
    gateway_checks_keys: bool = False,
) -> Route:
    """Route `model_id` for a POST to `path`. Raises GatewayError (400) for a bad or unknown id."""
    if not modelref.is_clean(model_id):
        raise GatewayError(
            400,
            "invalid_model",
            f"model must be 1-{modelref.MAX_MODEL_ID_LENGTH} printable characters",
            param="model",
        )
    ref = modelref.split(model_id)
    if ref.prefix is None:
        provider, wire = registry.default, ref.rest
    elif (found := registry.providers.get(ref.prefix)) is not None:
        provider, wire = found, ref.rest
    else:
        known = ", ".join(registry.providers)
        raise GatewayError(
            400,
            "model_not_found",
            f"unknown provider {_quoted(ref.prefix)} in model {_quoted(model_id)}; "
            f"known providers: {known}. Use provider/model, or a bare model id for the default "
            f"provider ({registry.default_provider}); a model whose name contains '/' needs its "
            f"provider prefix, e.g. {registry.default_provider}/<model>",
            param="model",
        )
    if not wire:
        raise GatewayError(
            400,
            "invalid_model",
            f"model {_quoted(model_id)} names no model after the provider",
            param="model",
        )
    anthropic = path in ANTHROPIC_PATHS
    base = provider.messages_base if anthropic else provider.inference_base
    if base is None:
        raise GatewayError(
            400,
            "messages_not_supported",
            f"provider {provider.id!r} has no Anthropic Messages API (/v1/messages); give it "
            "anthropicBaseUrl in the registry, or use its OpenAI routes",
            param="model",
        )
    if provider.api_key is not None:
        headers = provider.key_headers(anthropic=anthropic)
    elif (
        gateway_checks_keys or provider.kind.is_cloud or (anthropic and provider.anthropic_base_url)
    ):
        headers = {}  # the client's key is the gateway's, or not a cloud's or another host's
    else:
        headers = {}
        if client_authorization:
            headers["Authorization"] = client_authorization
        if client_api_key:
            headers["x-api-key"] = client_api_key
    return Route(provider=provider, wire_model=wire, url=base + path, headers=headers)


def _quoted(text: str, limit: int = 80) -> str:
    """Echo user input safely: bounded, repr-escaped."""
    shown = text if len(text) <= limit else text[:limit] + "..."
    return repr(shown)
