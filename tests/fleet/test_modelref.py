from __future__ import annotations

import pytest

from gateway.fleet import modelref


@pytest.mark.parametrize(
    ("model_id", "prefix", "rest"),
    [
        ("qwen3", None, "qwen3"),
        ("sam-desktop/qwen3", "sam-desktop", "qwen3"),
        ("sam-desktop/org/model-q4", "sam-desktop", "org/model-q4"),
        ("a/", "a", ""),
        ("/x", "", "x"),
    ],
)
def test_split_on_first_slash_only(model_id: str, prefix: str | None, rest: str) -> None:
    assert modelref.split(model_id) == (prefix, rest)


def test_composite_round_trips() -> None:
    assert modelref.split(modelref.composite("p", "org/m")) == ("p", "org/m")


@pytest.mark.parametrize(
    ("model_id", "clean"),
    [("ok-1.2", True), ("", False), ("a\nb", False), ("a\x00", False), ("x" * 513, False)],
)
def test_is_clean(model_id: str, clean: bool) -> None:
    assert modelref.is_clean(model_id) is clean
