"""Samsa's exceptions. Every error Samsa raises is a :class:`SamsaError`."""

from typing import Optional, Tuple


class SamsaError(Exception):
    """Base class of Samsa's errors.

    ``code`` and ``name`` are the Kafka error code and its name (``"TOPIC_AUTHORIZATION_FAILED"``)
    when the broker gave one, else ``None``; ``retriable`` says whether trying again may work.
    """

    def __init__(self, message: str, code: Optional[int] = None, name: Optional[str] = None, retriable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.name = name
        self.retriable = retriable


class KafkaError(SamsaError):
    """The broker refused a request with a Kafka error code (see ``code`` and ``name``)."""


class ConfigError(SamsaError, ValueError):
    """A configuration property or argument is unknown or has a bad value."""


class BrokerUnavailableError(SamsaError):
    """No broker answered at the given address, or the connection broke."""


class SamsaTimeoutError(SamsaError, TimeoutError):
    """A call did not finish within its timeout."""


class SqlError(SamsaError):
    """A SQL statement failed: a typo, an unknown column or table, a bad type.

    ``position`` is ``(line, column)`` of the problem when known, ``hint`` says what to do.
    """

    def __init__(self, message: str, position: Optional[Tuple[int, int]] = None, hint: Optional[str] = None, **kwargs):
        super().__init__(message, **kwargs)
        self.position = position
        self.hint = hint


class StreamsError(SamsaError):
    """A streams application failed: a bad topology, a state store, or a callable that raised."""
