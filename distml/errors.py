"""Exception types that distml raises, so users can catch them by kind."""

from __future__ import annotations


class DistmlError(Exception):
    """Base class of every error distml raises on purpose."""


class ProtocolError(DistmlError):
    """A peer sent bytes that are not a valid distml message (bad frame, size, or field)."""


class AuthenticationError(DistmlError):
    """A peer failed the shared-secret handshake, or we failed it against the peer."""


class CommClosedError(DistmlError):
    """The connection was closed while we were reading from or writing to it."""


class GraphError(DistmlError, ValueError):
    """A task graph is malformed: a missing key, a bad task, or a key that is not allowed."""


class CycleError(GraphError):
    """A task graph contains a cycle; the message names the keys on it."""


class SerializationError(DistmlError, TypeError):
    """An object could not be pickled for sending (for example a function holding a lock)."""


class CancelledError(DistmlError):
    """The future was cancelled before it finished."""


class KeyLostError(DistmlError):
    """A result was lost with its worker and cannot be recomputed (for example scattered data)."""


class WorkerDiedError(DistmlError):
    """A task was running on workers that died too many times; the message says why."""


class NoWorkersError(WorkerDiedError):
    """No worker is left to run a task and none is coming back (their nannies gave up
    restarting them, or none joined within ``no_workers_timeout``); the message says why."""


class TimeoutError(DistmlError, TimeoutError):  # noqa: A001 - subclass of the builtin, on purpose
    """An operation did not finish within the time it was given."""


class RemoteTaskError(DistmlError):
    """Wraps a task's exception that could not be rebuilt in the client (unpicklable)."""
