from __future__ import annotations

from typing import Any

import pytest

from gateway.core.errors import GatewayError
from gateway.fleet.favorites import normalize
from gateway.fleet.registry import parse_registry
from tests.conftest import registry_for

REG = parse_registry(
    registry_for(
        {"id": "sam", "baseUrl": "http://h:1"},
        {"id": "emb", "baseUrl": "http://h:2"},
        default="sam",
    ),
    "t",
    {},
)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ([], []),
        (["emb/qwen3"], ["emb/qwen3"]),
        (["  emb/qwen3  "], ["emb/qwen3"]),
        (["qwen3"], ["sam/qwen3"]),  # bare id -> default provider
        (
            ["emb/a", "sam/b", "emb/a", "emb/c"],
            ["emb/a", "sam/b", "emb/c"],
        ),  # first wins, order kept
        (["qwen3", "sam/qwen3"], ["sam/qwen3"]),  # the same model, spelled two ways
        (["sam/org/model"], ["sam/org/model"]),
    ],
)
def test_normalization(raw: list[Any], expected: list[str]) -> None:
    assert normalize(raw, REG) == expected


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ("emb/qwen3", "must be a list"),
        (["ok/x", 3], "[1] not a string (int)"),
        (["emb/a", ""], "[1] empty"),
        (["emb/a", "   "], "[1] empty"),
        ([None], "[0] not a string (NoneType)"),
        (["nope/x"], "[0] unknown provider 'nope'"),
        (["emb/"], "[0] 'emb/' names no model"),
        (["a\nb"], "[0] empty, too long, or has control characters"),
    ],
)
def test_malformed_entries_rejected_by_name(raw: Any, named: str) -> None:
    with pytest.raises(GatewayError) as info:
        normalize(raw, REG)
    assert (info.value.status, info.value.code, info.value.param) == (
        400,
        "invalid_settings",
        "favorite_models",
    )
    assert named in info.value.message
