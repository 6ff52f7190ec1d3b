"""Sticky conversations: the key, and the bounded memory."""

from __future__ import annotations

from gateway.pools.sticky import Sticky, conversation_key


def chat(*messages: tuple[str, object]) -> dict[str, object]:
    return {"messages": [{"role": r, "content": c} for r, c in messages]}


def test_follow_up_turns_share_the_first_turns_key() -> None:
    first = chat(("system", "be brief"), ("user", "hi"))
    later = chat(("system", "be brief"), ("user", "hi"), ("assistant", "hello"), ("user", "more"))
    assert conversation_key(first, None) == conversation_key(later, None) is not None


def test_other_conversations_get_other_keys() -> None:
    keys = {
        conversation_key(chat(("system", "be brief"), ("user", "hi")), None),
        conversation_key(chat(("system", "be long"), ("user", "hi")), None),
        conversation_key(chat(("user", "hi")), None),
        conversation_key(chat(("user", [{"type": "text", "text": "hi there"}])), None),
        conversation_key({"system": "s", "messages": [{"role": "user", "content": "hi"}]}, None),
        conversation_key({"instructions": "t", "input": "hi"}, None),
        conversation_key({"input": [{"role": "user", "content": "hello"}]}, None),
    }
    assert len(keys) == 7 and None not in keys


def test_the_clients_session_header_wins() -> None:
    body = chat(("user", "hi"))
    assert conversation_key(body, b"ses_1") != conversation_key(body, b"ses_2")
    assert conversation_key({"prompt": "no conversation"}, b"ses_1") == b"h:ses_1"


def test_nothing_that_names_a_conversation_means_no_key() -> None:
    assert conversation_key({"prompt": "x"}, None) is None
    assert conversation_key(chat(("system", "only a system prompt")), None) is None


def test_remembered_per_pool_bounded_and_forgotten_after_the_ttl() -> None:
    now = [0.0]
    sticky = Sticky(ttl_s=60, capacity=2, clock=lambda: now[0])
    sticky.served("any/m", b"k1", "a")
    assert sticky.get("any/m", b"k1") == "a"
    assert sticky.get("pool/p", b"k1") is None  # another pool, another choice
    sticky.served("any/m", b"k2", "b")
    sticky.served("any/m", b"k3", "b")  # capacity 2: the oldest goes
    assert sticky.get("any/m", b"k1") is None and len(sticky) == 2
    now[0] = 61
    assert sticky.get("any/m", b"k3") is None


def test_a_long_prompt_costs_its_first_kib_only_and_parts_count_by_their_text() -> None:
    agent = "You are a coding agent. " * 2000  # ~48 KB, as agents send
    a = conversation_key(chat(("system", agent), ("user", "fix the bug")), None)
    b = conversation_key(chat(("system", agent + "x"), ("user", "fix the bug")), None)
    assert a != b  # the length is part of it
    parts = chat(("system", agent), ("user", [{"type": "text", "text": "fix the bug"}]))
    assert conversation_key(parts, None) == a
    odd = chat(("system", 42), ("user", [None, 1]), ("user", {"x": 1}))
    assert conversation_key(odd, None) is not None  # odd types: a key, never an exception
