"""Composite model ids: `provider/model`, split on the first `/` only."""

from __future__ import annotations

from typing import NamedTuple

MAX_MODEL_ID_LENGTH = 512


class ModelRef(NamedTuple):
    prefix: str | None  # the part before the first "/", or None for a bare id
    rest: str  # the part after it (the wire id when prefix is a provider), or the bare id


def split(model_id: str) -> ModelRef:
    prefix, sep, rest = model_id.partition("/")
    if not sep:
        return ModelRef(None, model_id)
    return ModelRef(prefix, rest)


def composite(provider_id: str, wire_model: str) -> str:
    return f"{provider_id}/{wire_model}"


def is_clean(model_id: str) -> bool:
    """No control characters (CR, LF, NUL, ...) and a sane length."""
    return 0 < len(model_id) <= MAX_MODEL_ID_LENGTH and model_id.isprintable()
