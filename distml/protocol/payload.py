"""Task payloads inside messages: small parts inline in the header, large parts as frames.

A payload is the list of parts :class:`~distml.protocol.serialize.TaskCodec` makes for one task
(the function, the pickled arguments, then the arguments' out-of-band buffers). Most tasks are
tiny, and their parts travel fastest as msgpack bytes inside the header. A part bigger than
:data:`INLINE_BYTES` (an array argument) is replaced in the header by its index among the
message's frames instead: it is then not copied into and out of the header, not bounded by the
header size limit, and arrives zero-copy in an aligned, writable buffer.
"""

from __future__ import annotations

from typing import Any, Sequence

from distml.errors import ProtocolError

#: Parts up to this size travel inside the header.
INLINE_BYTES = 64 * 1024


def has_large_parts(payload: Sequence[Any]) -> bool:
    """Whether any part of ``payload`` must travel as a frame."""
    return any(memoryview(part).nbytes > INLINE_BYTES for part in payload)


def to_header(payload: Sequence[Any], frames: list) -> list:
    """``payload`` as a header value: large parts are appended to ``frames`` and replaced by
    their index there."""
    parts = []
    for part in payload:
        if memoryview(part).nbytes > INLINE_BYTES:
            parts.append(len(frames))
            frames.append(part)
        else:
            parts.append(part)
    return parts


def from_header(parts: Any, frames: Sequence[Any]) -> list:
    """The payload that ``parts`` (from a header) stands for; ``ProtocolError`` if malformed."""
    if not isinstance(parts, list):
        raise ProtocolError(f"task payload is a {type(parts).__name__}, not a list")
    payload = []
    for part in parts:
        if isinstance(part, bytes):
            payload.append(part)
        elif type(part) is int and 0 <= part < len(frames):
            payload.append(frames[part])
        else:
            raise ProtocolError(f"task payload part {part!r:.40} is neither bytes nor the index "
                                f"of one of the message's {len(frames)} frames")
    return payload
