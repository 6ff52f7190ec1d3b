"""The HTTP/1.1 edge: client connections (`connection`) and the side that accepts them
(`listener`), requests (`message`, `head`), the limits both sides hold messages to (`limits`),
replies and their framing (`reply`, `framing`, `headers`), pooled upstream connections
(`upstream`) and the relay between them (`relay`, with `coalesce`, `ends` and `streams`, the
exchanges in flight and their one sweep timer), with its one error type (`errors`) and log
record (`reqlog`).

It imports nothing of the control plane (checked by import-linter in `./dev lint`): the
application hands it a request handler, a head-time authorisation check and a refusal hook.

One vocabulary for ending things:
- `end()`: the message is complete (`Reply.end`, `Exchange.on_end`);
- `fail(err)`: end with an error the peer can read — a response, or a final SSE event;
- `cut()`: drop the connection mid-message, so the peer sees a truncated message;
- `release()` / `discard()`: a pooled connection is kept for reuse / closed for good;
- `cancel()`: the client went away, so its upstream request is dropped.
"""
