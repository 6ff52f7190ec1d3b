"""Raw sockets and a strict parser for the edge's conformance tests and fuzzer.

- `RawUpstream`: an upstream on raw sockets. Every request the gateway writes to it is parsed by
  h11 (a strict HTTP/1.1 state machine) — a request h11 refuses is recorded as a violation — and
  answered with whatever bytes the test scripts: hostile replies included.
- `responses()`: parse what a client received, strictly, with h11: every byte must belong to a
  well-formed response, in order; bytes after the last one are an error.
- `Client`: a raw client socket.

The `raw_upstream` fixture (tests/edge/conftest.py) starts `RawUpstream`s for a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import h11

MODELS = b'{"object":"list","data":[{"id":"m","object":"model","created":1,"owned_by":"t"}]}'


@dataclass
class Seen:
    """One request as the upstream received it."""

    conn: int  # the upstream connection it came on (accept order)
    index: int  # its position on that connection (0: first)
    method: str
    target: str
    headers: list[tuple[str, str]]  # names lower-cased, as h11 gives them
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)


Step = bytes | float | None  # bytes to write, seconds to wait, None: close the connection
Respond = Callable[[Seen], Sequence[Step] | Awaitable[Sequence[Step]]]


def json_reply(body: bytes, *, status: int = 200, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%b\r\n%b" % (
        status,
        len(body),
        extra,
        body,
    )


def echo(seen: Seen) -> bytes:
    """A reply that names the request it answers: its request id and a digest of its body."""
    digest = hashlib.sha256(seen.body).hexdigest()[:16]
    rid = seen.header("x-request-id") or "-"
    return json.dumps({"rid": rid, "body": digest, "conn": seen.conn}).encode()


def ok(seen: Seen) -> Sequence[Step]:
    return [json_reply(echo(seen))]


class RawUpstream:
    def __init__(self, respond: Respond = ok) -> None:
        self.respond = respond
        self.seen: list[Seen] = []
        self.violations: list[str] = []  # requests h11 refused
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def start(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number: int | None = None
        index = 0
        leftover = b""
        while True:
            conn = h11.Connection(h11.SERVER)
            if leftover:  # (receive_data(b"") means the peer closed)
                conn.receive_data(leftover)
            request: h11.Request | None = None
            body: list[bytes] = []
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    self.violations.append(f"h11 refused the gateway's request: {exc}")
                    return
                if event is h11.NEED_DATA:
                    data = await reader.read(65536)
                    conn.receive_data(data)
                    if not data and conn.their_state is h11.IDLE:
                        return  # closed between requests
                    continue
                if isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.Data):
                    body.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage):
                    break
                elif isinstance(event, h11.ConnectionClosed):
                    return
            assert request is not None
            leftover = conn.trailing_data[0]
            if request.method != b"POST":  # the catalog's look-ups: not part of any script
                found = request.target == b"/v1/models"
                writer.write(json_reply(MODELS) if found else json_reply(b"{}", status=404))
                continue
            if number is None:
                number = self.connections
                self.connections += 1
            seen = Seen(
                number, index, request.method.decode(), request.target.decode("latin-1"),
                [(n.decode("latin-1"), v.decode("latin-1")) for n, v in request.headers],
                b"".join(body),
            )  # fmt: skip
            self.seen.append(seen)
            index += 1
            steps = self.respond(seen)
            if not isinstance(steps, Sequence):
                steps = await steps
            for step in steps:
                if step is None:
                    return
                if isinstance(step, float):
                    await writer.drain()
                    await asyncio.sleep(step)
                else:
                    writer.write(step)
            await writer.drain()

    def inference(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "POST"]


RawFactory = Callable[[Respond], Awaitable[RawUpstream]]  # the `raw_upstream` fixture


@dataclass
class Parsed:
    status: int
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    body: bytes
    raw_headers: list[tuple[bytes, bytes]] = field(default_factory=list)

    def json(self) -> object:
        return json.loads(self.body)


class Incomplete(AssertionError):
    """The bytes ended inside a response (a cut connection)."""


def responses(raw: bytes, methods: Sequence[str], *, closed: bool = True) -> list[Parsed]:
    """Parse `raw` as the responses to requests with `methods`, strictly (h11). `closed`: the
    connection was closed after `raw`. Raises AssertionError on any malformed or extra byte,
    `Incomplete` when the bytes stop inside a response."""
    conn = h11.Connection(h11.CLIENT)
    if raw:  # (receive_data(b"") means the peer closed)
        conn.receive_data(raw)
    if closed:
        conn.receive_data(b"")
    out: list[Parsed] = []
    for method in methods:
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        head: h11.Response | None = None
        body: list[bytes] = []
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                if "incomplete" in str(exc) or "without sending complete" in str(exc):
                    raise Incomplete(str(exc)) from None
                raise AssertionError(f"h11 refused the gateway's reply: {exc}") from None
            if event is h11.NEED_DATA:
                raise Incomplete(f"the reply to {method} ended early: {raw[-200:]!r}")
            if isinstance(event, h11.ConnectionClosed):
                raise Incomplete(f"no reply to {method}")
            if isinstance(event, h11.InformationalResponse):
                continue
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
        assert head is not None
        out.append(
            Parsed(
                head.status_code,
                {n.decode().lower(): v.decode("latin-1") for n, v in head.headers},
                b"".join(body),
                [(bytes(n), bytes(v)) for n, v in head.headers],
            )
        )
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        else:
            break
    try:
        event = conn.next_event()
    except h11.RemoteProtocolError as exc:
        raise AssertionError(f"bytes after the last reply: {exc}") from None
    assert event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.ConnectionClosed), event
    return out


class Client:
    """A raw client connection to the gateway; `read_reply()` parses replies strictly (h11),
    in order, keeping bytes that belong to the next one."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._h11 = h11.Connection(h11.CLIENT)

    @classmethod
    async def open(cls, port: int) -> Client:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def read_all(self, within: float = 10) -> bytes:
        """Everything until the gateway closes the connection."""
        return await asyncio.wait_for(self.reader.read(), within)

    async def read_reply(self, method: str = "POST", within: float = 10) -> Parsed:
        """The next complete reply on this connection."""
        conn = self._h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        conn.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        conn.send(h11.EndOfMessage())
        head: h11.Response | None = None
        body: list[bytes] = []
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                raise AssertionError(f"h11 refused the gateway's reply: {exc}") from None
            if event is h11.NEED_DATA:
                conn.receive_data(await asyncio.wait_for(self.reader.read(65536), within))
                continue
            if isinstance(event, h11.ConnectionClosed):
                raise Incomplete("closed before a reply")
            if isinstance(event, h11.Response):
                head = event
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                assert head is not None
                return Parsed(
                    head.status_code,
                    {n.decode().lower(): v.decode("latin-1") for n, v in head.headers},
                    b"".join(body),
                    [(bytes(n), bytes(v)) for n, v in head.headers],
                )

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def post(body: bytes, *, path: str = "/v1/chat/completions", extra: bytes = b"") -> bytes:
    return (
        b"POST %b HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n%b"
        b"Content-Length: %d\r\n\r\n%b" % (path.encode(), extra, len(body), body)
    )


def chat(marker: str, *, model: str = "a/m", extra: bytes = b"") -> bytes:
    body = json.dumps({"model": model, "marker": marker}).encode()
    return post(body, extra=extra + b"X-Request-Id: %b\r\n" % marker.encode())


def marker_digest(marker: str, model: str = "m") -> str:
    """The digest `echo` reports for `chat(marker)` as the upstream received it (bare model)."""
    body = json.dumps({"model": model, "marker": marker}).encode()
    return hashlib.sha256(body).hexdigest()[:16]
