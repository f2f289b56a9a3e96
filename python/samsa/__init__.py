"""Samsa for Python: a Kafka-compatible broker you can embed, Kafka clients, SQL over
topics into pyarrow, and a streams DSL running Python callables on Samsa's engine.

>>> import samsa
>>> with samsa.EmbeddedBroker() as broker:
...     p = samsa.Producer(broker.bootstrap)
...     p.send("greetings", b"hello").result()
...     broker.sql("SELECT COUNT(*) AS n FROM greetings")   # needs CREATE STREAM first
"""

from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    import pyarrow

from . import errors
from ._samsa import (
    Admin,
    Consumer,
    DeliveryFuture,
    GroupedStream,
    Message,
    Producer,
    RecordMetadata,
    Stream,
    StreamsApp,
    Table,
    __version__,
)
from ._samsa import EmbeddedBroker as _NativeBroker
from .errors import (
    BrokerUnavailableError,
    ConfigError,
    KafkaError,
    SamsaError,
    SamsaTimeoutError,
    SqlError,
    StreamsError,
)
from .windows import Hopping, Session, Tumbling
from ._sql import SqlBatches, _result, sql
from . import aio

__all__ = [
    "Admin",
    "BrokerUnavailableError",
    "ConfigError",
    "Consumer",
    "DeliveryFuture",
    "EmbeddedBroker",
    "GroupedStream",
    "Hopping",
    "KafkaError",
    "Message",
    "Producer",
    "RecordMetadata",
    "SamsaError",
    "SamsaTimeoutError",
    "Session",
    "SqlBatches",
    "SqlError",
    "Stream",
    "StreamsApp",
    "StreamsError",
    "Table",
    "Tumbling",
    "aio",
    "errors",
    "sql",
    "__version__",
]


class EmbeddedBroker:
    """A single-node Kafka-compatible broker inside this process, with Samsa's SQL engine.

    ``data_dir=None`` keeps the data in a temporary directory removed by :meth:`close`.
    Any Kafka client can connect to :attr:`bootstrap`. Use it as a context manager.
    """

    def __init__(self, data_dir: Optional[str] = None, port: int = 0, config: Optional[dict] = None):
        self._native = _NativeBroker(data_dir, port, config)

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap.servers``."""
        return self._native.bootstrap

    @property
    def data_dir(self) -> str:
        """Where the broker keeps its logs and metadata."""
        return self._native.data_dir

    def sql(self, query: str) -> Union["pyarrow.Table", SqlBatches]:
        """Runs one SQL statement: a ``pyarrow.Table`` for a bounded query or DDL (whose
        message is in ``table.schema.metadata[b"samsa.message"]``), or an iterator of
        ``pyarrow.RecordBatch`` for ``... EMIT CHANGES``."""
        kind, payload = self._native._sql(query)
        return _result(kind, payload)

    def close(self) -> None:
        """Stops the SQL engine's queries and the broker; idempotent."""
        self._native.close()

    def __enter__(self) -> "EmbeddedBroker":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False

    def __repr__(self) -> str:
        return repr(self._native)
