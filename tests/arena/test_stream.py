"""Reading a stream as a client: text as it arrives, then the figures — llama-server's timings
when the final chunk has them, else the client's clock and usage."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.arena.stream import Reading


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def line(event: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(event) + b"\n"


def delta(**d: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": d}]}


def test_text_and_reasoning_come_out_comments_and_junk_do_not() -> None:
    reading = Reading(clock=Clock())
    assert reading.feed_line(b": keep-alive\n") is None
    assert reading.feed_line(b"data: {not json\n") is None
    assert reading.feed_line(b"event: x\n") is None
    assert reading.feed_line(line(delta(reasoning_content="hmm"))) == ("reasoning", "hmm")
    assert reading.feed_line(line(delta(content="Hi"))) == ("text", "Hi")
    assert reading.feed_line(line(delta(role="assistant"))) is None
    assert reading.feed_line(line({"choices": []})) is None
    assert not reading.done
    assert reading.feed_line(b"data: [DONE]\n") is None
    assert reading.done and reading.pieces == 1


def test_an_error_event_is_kept() -> None:
    reading = Reading(clock=Clock())
    reading.feed_line(line({"error": {"code": "request_cancelled", "message": "x"}}))
    assert reading.error == {"code": "request_cancelled", "message": "x"}


LLAMA_TIMINGS = {
    "prompt_n": 40, "prompt_ms": 20.0, "prompt_per_second": 2000.0, "cache_n": 2,
    "predicted_n": 10, "predicted_ms": 50.0, "predicted_per_second": 200.0,
}  # fmt: skip


@pytest.mark.parametrize(
    ("final", "figures"),
    [
        # llama-server: its own rates
        ({"timings": LLAMA_TIMINGS}, (500.0, 200.0, 10, 42, 2000.0, "timings")),
        # timings without the per-second fields: n over ms
        (
            {"timings": {"prompt_n": 30, "prompt_ms": 10.0, "predicted_n": 5, "predicted_ms": 20}},
            (500.0, 250.0, 5, 30, 3000.0, "timings"),
        ),
        # usage only (a cloud): tokens over the generation's wall time, prompt over TTFT
        (
            {"usage": {"prompt_tokens": 50, "completion_tokens": 8}},
            (500.0, 4.0, 8, 50, 100.0, "wall"),
        ),
        # nothing said: the content pieces are the count
        ({}, (500.0, 1.5, 3, None, None, "wall")),
    ],
)
def test_figures(final: dict[str, Any], figures: tuple[Any, ...]) -> None:
    clock = Clock()
    reading = Reading(clock=clock)  # started at 100.0
    clock.now = 100.5  # the first token, 500 ms later
    for piece in ("a", "b", "c"):
        reading.feed_line(line(delta(content=piece)))
    clock.now = 102.5  # two seconds of generation
    reading.feed_line(line({"choices": [{"index": 0, "delta": {}}], **final}))
    f = reading.figures()
    got = (f.ttft_ms, f.tokens_per_second, f.completion_tokens, f.prompt_tokens,
           f.prompt_per_second, f.source)  # fmt: skip
    assert got == figures


def test_no_token_no_figures() -> None:
    f = Reading(clock=Clock()).figures()
    assert (f.ttft_ms, f.tokens_per_second, f.completion_tokens) == (None, None, None)
