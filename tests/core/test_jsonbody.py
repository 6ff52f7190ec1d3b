"""The request body: model found once, replaced in place, every other byte kept."""

from __future__ import annotations

import pytest

from gateway.core.errors import GatewayError
from gateway.core.jsonbody import parse_body


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"a/m","seed":123456789012345678901234567890,"t":1.00000000000000000001}',
        b'{ "messages": [{"role": "user", "content": "say \\"model\\": x"}],\n  "model" : "a/m" }',
        b'{"tools":[{"parameters":{"properties":{"model":{"type":"string"}}}}],"model":"a/m"}',
        b'{"mod\\u0065l":"a/m","x":1e400}',  # an escaped key; a number past a double's range
    ],
)
def test_only_the_model_changes(raw: bytes) -> None:
    body = parse_body(raw)
    assert body.model == "a/m"
    start = body.value_at
    assert raw[start:].startswith(b'"a/m"')
    out = body.with_model("m")
    assert out == raw[:start] + b'"m"' + raw[start + 5 :]


def test_a_model_with_escapes_is_replaced_whole() -> None:
    body = parse_body(b'{"model":"a/\\u006d\\"x","n":1}')
    assert body.model == 'a/m"x'
    assert body.with_model('m"x') == b'{"model":"m\\"x","n":1}'


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"a/m","model":"b/m"}',
        b'{"model":"bare","x":{"model":"nested is fine"},"model":"a/m"}',
        b'{"model":"a/m","mod\\u0065l":"b/m"}',
        b'{"model":"a/m", "MODEL":"x", "\\u006dodel":"b/m"}',
    ],
)
def test_model_twice_at_the_top_is_refused(raw: bytes) -> None:
    with pytest.raises(GatewayError) as info:
        parse_body(raw)
    assert (info.value.status, info.value.code) == (400, "duplicate_model")


def test_nested_model_keys_are_not_duplicates() -> None:
    raw = b'{"a":{"model":"x"},"b":[{"model":"y"}],"c":"\\"model\\": z","model":"a/m"}'
    assert parse_body(raw).with_model("m") == raw.replace(b'"a/m"', b'"m"')


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"{", "invalid_json"),
        (b'{"model": NaN}', "invalid_json"),
        (b'{"x": 1e400, "model": "\\ud800"}', "invalid_json"),  # a lone surrogate
        (b"[]", "invalid_body"),
        (b"{}", "missing_model"),
        (b'{"model": 1}', "invalid_model"),
        (b'{"model": " "}', "invalid_model"),
    ],
)
def test_bad_bodies(raw: bytes, code: str) -> None:
    with pytest.raises(GatewayError) as info:
        parse_body(raw)
    assert info.value.code == code
