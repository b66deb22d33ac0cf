"""Receive buffers whose parts start at 64-byte aligned addresses.

Frames read back to back into one buffer start wherever the previous frame ended, so a numpy
array rebuilt on such a frame can sit at an odd address; numpy then skips BLAS for it (ten
times slower for a matrix product, and rounded differently). Laying the parts out at aligned
offsets of one allocation, with a little padding between them, keeps them zero-copy and aligned
for any dtype and for SIMD loads.
"""

from __future__ import annotations

import ctypes
from typing import Sequence

#: Every part starts at an address that is a multiple of this (a cache line; enough for any
#: numpy dtype and for AVX-512 loads).
ALIGNMENT = 64


def padded(length: int) -> int:
    """``length`` rounded up to a multiple of :data:`ALIGNMENT`: the room a part takes."""
    return -(-length // ALIGNMENT) * ALIGNMENT


def address(buffer: bytearray) -> int:
    """Memory address of a non-empty ``bytearray``'s first byte."""
    anchor = ctypes.c_char.from_buffer(buffer)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor  # release the export, or the bytearray could never be resized or freed early


def aligned_parts(lengths: Sequence[int]) -> list[memoryview]:
    """Writable memoryviews of the given lengths, all in one new allocation, each starting at
    an :data:`ALIGNMENT`-aligned address (empty parts are empty views)."""
    total = sum(padded(length) for length in lengths)
    if total == 0:
        return [memoryview(bytearray()) for _ in lengths]
    buffer = bytearray(total + ALIGNMENT - 1)
    offset = -address(buffer) % ALIGNMENT
    view = memoryview(buffer)
    parts = []
    for length in lengths:
        parts.append(view[offset:offset + length])
        offset += padded(length)
    return parts


def writable(parts: Sequence) -> list:
    """``parts`` as writable, aligned buffers: read-only ones (bytes that came inside a message
    header) are copied into one aligned allocation, so that arrays rebuilt on them can be
    written to and get BLAS; writable ones are used as they are."""
    readonly = [i for i, part in enumerate(parts) if memoryview(part).readonly]
    out = list(parts)
    if readonly:
        slots = aligned_parts([memoryview(parts[i]).nbytes for i in readonly])
        for i, slot in zip(readonly, slots):
            slot[:] = parts[i]
            out[i] = slot
    return out
