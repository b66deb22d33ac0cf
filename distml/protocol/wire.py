"""Message framing: a msgpack header (data only, never pickle) plus raw frames.

On the wire a message is ``u32 nframes``, then ``u64`` lengths for the header and each frame, then
the header and the frames. Counts and lengths are checked against limits before any memory is
allocated, so a peer cannot make us reserve more than the limits allow.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Sequence

import msgpack
from tornado.iostream import IOStream, StreamClosedError

from distml.errors import CommClosedError, ProtocolError

_COUNT = struct.Struct("<I")


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int
    max_frame_bytes: int
    max_frames: int


#: What an unauthenticated peer may send: one small header, no frames.
PREAUTH_LIMITS = Limits(max_header_bytes=4096, max_frame_bytes=0, max_frames=0)


def encode(header: dict[str, Any], frames: Sequence[Any] = ()) -> list[Any]:
    """The buffers to write for one message; frames are passed through uncopied."""
    packed = msgpack.packb(header, use_bin_type=True)
    lengths = [len(packed)] + [memoryview(f).nbytes for f in frames]
    prefix = _COUNT.pack(len(frames)) + struct.pack(f"<{len(lengths)}Q", *lengths)
    return [prefix + packed, *frames]


def decode_header(data: Any) -> dict[str, Any]:
    try:
        # the header's length was checked against the limits before it was read
        header = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False)
    except Exception as exc:  # noqa: BLE001 - msgpack raises several types for bad input
        raise ProtocolError(f"malformed message header: {type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"message header is a {type(header).__name__}, not a map")
    if not isinstance(header.get("op"), str):
        raise ProtocolError("message header has no 'op' string")
    return header


async def read_message(stream: IOStream, limits: Limits) -> tuple[dict[str, Any], list]:
    """Read one message; ``ProtocolError`` for anything over the limits or malformed."""
    try:
        (count,) = _COUNT.unpack(await stream.read_bytes(_COUNT.size))
        if count > limits.max_frames:
            raise ProtocolError(f"message of {count} frames exceeds the limit of "
                                f"{limits.max_frames}")
        raw_lengths = await stream.read_bytes(8 * (count + 1))
        lengths = struct.unpack(f"<{count + 1}Q", raw_lengths)
        if lengths[0] > limits.max_header_bytes:
            raise ProtocolError(f"header of {lengths[0]} bytes exceeds the limit of "
                                f"{limits.max_header_bytes}")
        for length in lengths[1:]:
            if length > limits.max_frame_bytes:
                raise ProtocolError(f"frame of {length} bytes exceeds the limit of "
                                    f"{limits.max_frame_bytes}")
        body = bytearray(sum(lengths))
        if body:
            await stream.read_into(body)
    except StreamClosedError as exc:
        raise CommClosedError(f"connection closed: {exc.real_error or 'by peer'}") from None
    view = memoryview(body)
    header = decode_header(view[: lengths[0]])
    frames, start = [], lengths[0]
    for length in lengths[1:]:
        frames.append(view[start:start + length])
        start += length
    return header, frames


async def write_message(stream: IOStream, header: dict[str, Any], frames: Sequence[Any] = ()
                        ) -> None:
    """Write one message. Parts are queued without awaiting in between, so concurrent writers
    never interleave their bytes."""
    try:
        buffers = encode(header, frames)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"cannot encode message {header.get('op')!r}: {exc}") from None
    try:
        future = None
        for buffer in buffers:
            if memoryview(buffer).nbytes:
                future = stream.write(buffer)
        if future is not None:
            await future
    except StreamClosedError as exc:
        raise CommClosedError(f"connection closed: {exc.real_error or 'by peer'}") from None
