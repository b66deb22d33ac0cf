"""Message framing: a msgpack header (data only, never pickle) plus raw frames.

On the wire a message is ``u32 nframes``, then ``u64`` lengths for the header and each frame, then
the header and the frames, all little-endian. Counts and lengths are checked against limits before
any memory is allocated, and the body is read in chunks of at most ``CHUNK_BYTES`` (or one frame,
if bigger), so a peer cannot make us reserve much more memory than it has actually sent. Each
received part starts at a 64-byte aligned address (the bytes on the wire are unchanged).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import msgpack
from tornado.iostream import IOStream, StreamClosedError

from distml.errors import CommClosedError, ProtocolError
from distml.protocol.buffers import aligned_parts, padded

if TYPE_CHECKING:
    from distml.config import Config

Frame = bytes | bytearray | memoryview

#: Frame count and header length, read together so that a header-only message costs two reads.
_PREFIX = struct.Struct("<IQ")
_LENGTH = struct.Struct("<Q")

#: Consecutive small frames share one receive buffer of up to this size (padding included).
CHUNK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Limits:
    """What one incoming message may contain; checked before any allocation."""

    max_header_bytes: int
    max_frame_bytes: int
    max_frames: int

    @classmethod
    def from_config(cls, config: "Config") -> "Limits":
        return cls(config.max_header_bytes, config.max_frame_bytes, config.max_frames)

    @property
    def stream_buffer_bytes(self) -> int:
        """The ``max_buffer_size`` a tornado stream needs to read any message within these
        limits: tornado refuses a single read larger than its buffer, even into our own."""
        largest_read = max(CHUNK_BYTES, self.max_header_bytes, self.max_frame_bytes,
                           _LENGTH.size * self.max_frames)
        return largest_read + 2**20  # tornado may read one socket chunk past the request


#: What an unauthenticated peer may send: one small header, no frames.
PREAUTH_LIMITS = Limits(max_header_bytes=4096, max_frame_bytes=0, max_frames=0)


def _byte_view(frame: Any) -> Frame:
    """``frame`` as a flat byte buffer, without copying (tornado slices by length)."""
    if isinstance(frame, (bytes, bytearray)):
        return frame
    view = memoryview(frame)
    if view.ndim == 1 and view.format == "B":
        return frame if isinstance(frame, memoryview) else view
    try:
        return view.cast("B")
    except TypeError:
        raise ProtocolError(f"frame of shape {view.shape} is not contiguous; send a copy") from None


def pack_header(header: dict[str, Any]) -> bytes:
    """The msgpack form of ``header``; ``ProtocolError`` if it is not msgpack data."""
    try:
        return msgpack.packb(header, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"cannot encode header of message {header.get('op')!r}: "
                            f"{exc}") from None


def owned_frame(frame: Any) -> bytes | bytearray:
    """``frame``'s bytes in a buffer no one else can change: itself if ``bytes``, else a copy
    (for a message that stays in this process, where the sender might reuse its buffer)."""
    return frame if isinstance(frame, bytes) else bytearray(_byte_view(frame))


def encode(header: dict[str, Any], frames: Sequence[Any] = ()) -> list[Frame]:
    """The buffers to write for one message: prefix and header in one ``bytes``, then the
    frames as they are (uncopied). Raises ``ProtocolError`` if the header is not msgpack data."""
    packed = pack_header(header)
    views = [_byte_view(f) for f in frames]
    lengths = [memoryview(v).nbytes for v in views]
    prefix = _PREFIX.pack(len(views), len(packed)) + struct.pack(f"<{len(lengths)}Q", *lengths)
    return [prefix + packed, *views]


def _reject_ext(code: int, data: bytes) -> None:
    raise ProtocolError(f"message header contains msgpack extension type {code}")


def decode_header(data: Frame) -> dict[str, Any]:
    """Decode and check a msgpack header: a map with a str ``"op"``."""
    try:
        # msgpack bounds every string, list and map by len(data), itself checked by the limits
        header = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=False,
                                 ext_hook=_reject_ext)
    except ProtocolError:
        raise
    except Exception as exc:  # noqa: BLE001 - msgpack raises several types for bad input
        raise ProtocolError(f"malformed message header: {type(exc).__name__}: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"message header is a {type(header).__name__}, not a map")
    if not isinstance(header.get("op"), str):
        raise ProtocolError("message header has no 'op' string")
    return header


def _check_prefix(count: int, header_bytes: int, limits: Limits) -> None:
    if count > limits.max_frames:
        raise ProtocolError(f"message of {count} frames exceeds the limit of {limits.max_frames}")
    if header_bytes > limits.max_header_bytes:
        raise ProtocolError(f"header of {header_bytes} bytes exceeds the limit of "
                            f"{limits.max_header_bytes}")


def _check_frames(frame_lengths: Sequence[int], limits: Limits) -> None:
    for length in frame_lengths:
        if length > limits.max_frame_bytes:
            raise ProtocolError(f"frame of {length} bytes exceeds the limit of "
                                f"{limits.max_frame_bytes}")


def check_limits(header_bytes: int, frame_lengths: Sequence[int], limits: Limits) -> None:
    """``ProtocolError`` if a message of these sizes is over ``limits``."""
    _check_prefix(len(frame_lengths), header_bytes, limits)
    _check_frames(frame_lengths, limits)


def _chunks(lengths: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Split ``lengths`` into runs ``[start, stop)`` of at most ``CHUNK_BYTES`` each (a single
    bigger item forms its own run)."""
    start, size = 0, 0
    for i, length in enumerate(lengths):
        if i > start and size + length > CHUNK_BYTES:
            yield start, i
            start, size = i, 0
        size += length
    if start < len(lengths):
        yield start, len(lengths)


async def _read_body(stream: IOStream, lengths: Sequence[int]) -> list[memoryview]:
    """Read consecutive parts of the given lengths as writable, zero-copy memoryviews, each
    starting 64-byte aligned (:mod:`distml.protocol.buffers`) so that arrays rebuilt on them
    get BLAS. One allocation per chunk (padding included in its size); each part is read
    straight into its slot."""
    parts: list[memoryview] = []
    for start, stop in _chunks([padded(length) for length in lengths]):
        for part in aligned_parts(lengths[start:stop]):
            if part.nbytes:
                await stream.read_into(part)
            parts.append(part)
    return parts


async def read_message(stream: IOStream, limits: Limits) -> tuple[dict[str, Any], list[memoryview]]:
    """Read one message; ``ProtocolError`` for anything over ``limits`` or malformed,
    ``CommClosedError`` if the stream closes first."""
    try:
        count, header_bytes = _PREFIX.unpack(await stream.read_bytes(_PREFIX.size))
        _check_prefix(count, header_bytes, limits)
        frame_lengths: tuple[int, ...] = ()
        if count:
            frame_lengths = struct.unpack(f"<{count}Q",
                                          await stream.read_bytes(_LENGTH.size * count))
            _check_frames(frame_lengths, limits)
        header_view, *frames = await _read_body(stream, (header_bytes, *frame_lengths))
    except StreamClosedError as exc:
        raise CommClosedError(f"connection closed: {exc.real_error or 'by peer'}") from None
    return decode_header(header_view), frames


async def write_message(stream: IOStream, header: dict[str, Any], frames: Sequence[Any] = ()
                        ) -> None:
    """Write one message. All parts are queued before the first await, so concurrent writers
    never interleave their bytes."""
    buffers = encode(header, frames)
    try:
        future = None
        for buffer in buffers:
            if len(buffer):
                future = stream.write(buffer)
        if future is not None:
            await future
    except StreamClosedError as exc:
        raise CommClosedError(f"connection closed: {exc.real_error or 'by peer'}") from None
