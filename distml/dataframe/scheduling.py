"""Naming of graph layers and running graphs: on the default client, or in this process."""

from __future__ import annotations

import uuid
from collections.abc import Hashable, Mapping
from typing import Any

from distml.client.client import default_client
from distml.local import get_threaded


def new_name(prefix: str) -> str:
    """A fresh, unique name for the keys of a new graph layer, e.g. ``"assign-1f0c..."``."""
    return f"{prefix}-{uuid.uuid4().hex[:20]}"


def get(dsk: Mapping, keys: list[Hashable]) -> list[Any]:
    """Values of ``keys`` in ``dsk``: on the default client if one is open, else in-process."""
    client = default_client()
    if client is not None:
        return client.get(dsk, keys)
    return get_threaded(dsk, keys)
