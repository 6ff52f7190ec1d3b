"""A client connection's states and the transitions allowed between them (h11's table, as
masks). `connection.ClientConnection` checks each change against it."""

from __future__ import annotations

# A connection's state: what its client's bytes are, as they arrive. One bit each, so that the
# transition table below is a mask per state. (Module-level ints, not an Enum: Python 3.11 looks
# an Enum member up through its class in ~130 ns, and the parser callbacks, run for every
# request, read and set the state several times.) Flow control — reading paused, writing
# paused, a reply waiting for the client to read — is orthogonal to it and kept in flags.
IDLE = 1  # between messages (a request may be queued or served meanwhile)
IN_HEAD = 2  # a request line and headers arriving (a new connection owes its first head)
IN_BODY = 4  # a body (and chunk framing, trailers) arriving
LINGERING = 8  # answered with an error and half-closed: what the client still sends is dropped
CLOSED = 16  # the connection is gone (`lost`, for the `Reply` writing to it)
STATE_NAMES = {IDLE: "IDLE", IN_HEAD: "IN_HEAD", IN_BODY: "IN_BODY", LINGERING: "LINGERING",
               CLOSED: "CLOSED"}  # fmt: skip

# The transitions allowed (h11's table, as masks): each state, and the states it may be entered
# from. Checked by one `assert` where the state changes (a bit test; stripped under -O).
ENTERED_FROM = {
    IN_HEAD: IDLE | IN_HEAD,  # a message begins: after the last one, or as the first one
    IN_BODY: IN_HEAD,  # its head is complete
    IDLE: IN_BODY,  # the message is complete
    LINGERING: IDLE | IN_HEAD | IN_BODY,  # its error was answered (in its turn)
    CLOSED: IDLE | IN_HEAD | IN_BODY | LINGERING,  # from anywhere, once
}

# ...one mask per state, so that a check reads one global (an assert costs ~12 ns, this way)
INTO_IN_HEAD = ENTERED_FROM[IN_HEAD]
INTO_IN_BODY = ENTERED_FROM[IN_BODY]
INTO_IDLE = ENTERED_FROM[IDLE]
INTO_LINGERING = ENTERED_FROM[LINGERING]
INTO_CLOSED = ENTERED_FROM[CLOSED]


def illegal(state: int, new: int) -> str:
    return f"a connection in {STATE_NAMES[state]} cannot go to {STATE_NAMES[new]}"
