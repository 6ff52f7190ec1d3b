"""Gateway keys: `label:key` entries, the label a request is recorded under, never the key."""

from __future__ import annotations

from gateway.access.keys import GatewayKey, label_of, parse_keys


def test_labels_are_given_or_by_position() -> None:
    keys = parse_keys(["alice:k-1", "k-2", "ci:k:3", "not a label:k-4", ":k-5"])
    assert [(k.label, k.secret) for k in keys] == [
        ("alice", b"k-1"), ("key2", b"k-2"), ("ci", b"k:3"),
        ("key4", b"not a label:k-4"), ("key5", b":k-5"),
    ]  # fmt: skip
    assert "k-1" not in repr(keys)


def test_the_label_of_the_key_presented() -> None:
    keys = (GatewayKey("alice", b"k-1"), GatewayKey("ci", b"k-2"))
    assert label_of(keys, b"Bearer k-2", None) == "ci"
    assert label_of(keys, None, b"k-1") == "alice"
    assert label_of(keys, b"Bearer nope", None) is None
    assert label_of(keys, None, None) is None
