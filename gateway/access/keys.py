"""Gateway API keys: which paths need one, and the check.

Two kinds: admin keys (GATEWAY_API_KEYS, compared in constant time; every protected route) and
managed keys (`boocode-gateway keys add`, kept in the store as the SHA-256 of the secret, found
by it; `/v1/*` only, with limits). Once a managed key exists, `/api/*` needs an admin key even
when none is set (then it is closed): a teammate's key must not open other people's requests,
captures and machines. The front calls `KeyCheck.authorize` on every request's
head, before its body is read; the control plane's middleware asks `KeyCheck.refusal` again for
its own routes. The managed keys are a snapshot the control plane refreshes from the store.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.access.limits import Limits
from gateway.edge.errors import GatewayError
from gateway.edge.message import Incoming
from gateway.store.tables import KeyRecord

PROTECTED = ("/v1/", "/api/")  # /health, /metrics, the page and its static files stay open
ADMIN_ONLY = "/api/"  # managed keys: /v1/* only
_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,32}")
SECRET_PREFIX = "bgw-"  # noqa: S105 (what a managed key starts with)


def valid_label(label: str) -> bool:
    return _LABEL.fullmatch(label) is not None


def new_secret() -> str:
    """A managed key's secret: 256 random bits (shown once; the store keeps its digest)."""
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def digest(secret: bytes) -> str:
    """What the store keeps of a managed key. One SHA-256 is enough: the secret is random,
    256 bits, nothing to guess from a dictionary; a slow hash would cost on every request."""
    return hashlib.sha256(secret).hexdigest()


def model_allowed(key: KeyRecord, model: str) -> bool:
    """The model id a request names, against the key's globs (none: any model)."""
    return not key.models or any(fnmatch.fnmatchcase(model, glob) for glob in key.models)


@dataclass(frozen=True, slots=True)
class GatewayKey:
    """A key clients send, and the label usage is recorded under (never the key itself)."""

    label: str
    secret: bytes = field(repr=False)


def parse_keys(entries: Sequence[str]) -> tuple[GatewayKey, ...]:
    """GATEWAY_API_KEYS entries: `label:key` (label: 1-32 of A-Z a-z 0-9 _ . -), or a bare key,
    labelled `key1`, `key2`, ... by its position."""
    out = []
    for position, entry in enumerate(entries, 1):
        label, sep, secret = entry.partition(":")
        if sep and secret and _LABEL.fullmatch(label):
            out.append(GatewayKey(label, secret.encode()))
        else:
            out.append(GatewayKey(f"key{position}", entry.encode()))
    return tuple(out)


def first_secret(entries: Sequence[str]) -> str | None:
    """The key a sync writes into an agent's config: the first one's secret (never its label)."""
    keys = parse_keys(entries)
    return keys[0].secret.decode() if keys else None


def label_of(
    keys: Sequence[GatewayKey], authorization: bytes | None, x_api_key: bytes | None
) -> str | None:
    """The label of the key the request presents (all compared: timing tells nothing)."""
    given = _presented(_text(authorization), _text(x_api_key))
    if given is None:
        return None
    found = None
    for key in keys:
        if hmac.compare_digest(given, key.secret):
            found = key.label
    return found


def _presented(authorization: str | None, x_api_key: str | None) -> bytes | None:
    scheme, _, token = (authorization or "").partition(" ")
    presented = token.strip() if scheme.lower() == "bearer" and token.strip() else x_api_key
    return None if presented is None else presented.encode("utf-8", "surrogateescape")


def check_key(keys: tuple[bytes, ...], authorization: str | None, x_api_key: str | None) -> None:
    """Raise 401 unless the request presents one of `keys` (Bearer, or x-api-key)."""
    given = _presented(authorization, x_api_key)  # the bytes as sent
    if given is None:
        raise GatewayError(
            401, "missing_api_key", "this gateway needs an API key (Authorization: Bearer ...)"
        )
    matched = False
    for key in keys:  # compare against every key, so timing says nothing about which matched
        matched |= hmac.compare_digest(given, key)
    if not matched:
        raise GatewayError(401, "invalid_api_key", "the API key is not valid for this gateway")


class KeyCheck:
    """The head-time check: admin keys, managed keys (`load`ed from the store) and their
    limits on `limited` paths (inference)."""

    __slots__ = ("admin", "clock", "limited", "limits", "managed", "secrets")

    def __init__(
        self,
        admin: Sequence[GatewayKey] = (),
        limited: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.admin = tuple(admin)
        self.secrets = tuple(k.secret for k in self.admin)
        self.limited = limited
        self.clock = clock
        self.limits = Limits(clock)
        self.managed: dict[bytes, KeyRecord] = {}  # by the SHA-256 of the secret

    def load(self, records: Sequence[KeyRecord]) -> None:
        """The managed keys as the store has them now (a record that does not read is passed
        over)."""
        managed = {}
        for record in records:
            try:
                managed[bytes.fromhex(record.digest)] = record
            except ValueError:
                continue
        self.managed = managed
        self.limits.keep(records)

    @property
    def checking(self) -> bool:
        """Whether requests need a key (else the gateway is open)."""
        return bool(self.secrets) or bool(self.managed)

    def identify(
        self, authorization: bytes | None, x_api_key: bytes | None
    ) -> GatewayKey | KeyRecord | None:
        """The key a request presents: an admin key, a managed key, or None."""
        given = _presented(_text(authorization), _text(x_api_key))
        if given is None:
            return None
        found = None
        for key in self.admin:  # every one compared: timing tells nothing
            if hmac.compare_digest(given, key.secret):
                found = key
        if found is not None:
            return found
        return self.managed.get(hashlib.sha256(given).digest())

    def refusal(
        self, path: str, authorization: bytes | None, x_api_key: bytes | None
    ) -> GatewayError | None:
        """Why the request may not go on (None: it may)."""
        if not path.startswith(PROTECTED) or not (self.secrets or self.managed):
            return None
        if not self.secrets and path.startswith(ADMIN_ONLY):  # managed keys, no admin key
            return GatewayError(
                403, "admin_key_required",
                f"{path} needs an admin key, and none is set: managed keys exist, so the page "
                "and /api/* (requests and their captures, cancel, load, settings) are closed "
                "until GATEWAY_API_KEYS names one",
            )  # fmt: skip
        if _presented(_text(authorization), _text(x_api_key)) is None:
            return GatewayError(
                401, "missing_api_key", "this gateway needs an API key (Authorization: Bearer ...)"
            )
        key = self.identify(authorization, x_api_key)
        if key is None:
            return GatewayError(401, "invalid_api_key", "the API key is not valid for this gateway")
        if isinstance(key, GatewayKey):
            return None
        now = self.clock()
        if key.expires is not None and now >= key.expires:
            return GatewayError(401, "key_expired", f"the API key {key.label!r} has expired")
        if path.startswith(ADMIN_ONLY):
            return GatewayError(
                403, "admin_key_required", f"{path} needs an admin key (GATEWAY_API_KEYS)"
            )
        if path in self.limited:
            return self.limits.admit(key, now)
        return None

    def authorize(self, request: Incoming) -> GatewayError | None:
        if not (self.secrets or self.managed) or not request.path.startswith(PROTECTED):
            return None
        return self.refusal(
            request.path, request.header(b"authorization"), request.header(b"x-api-key")
        )


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", "surrogateescape")
