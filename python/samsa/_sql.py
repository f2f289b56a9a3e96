"""SQL results as pyarrow: over a server's HTTP API (``samsa.sql``) or in-process."""

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:
    import pyarrow

from .errors import BrokerUnavailableError, SqlError


def _pyarrow():
    try:
        import pyarrow
        import pyarrow.ipc  # noqa: F401
    except ImportError as e:  # pragma: no cover - pyarrow is a dependency
        raise ImportError("samsa's SQL results are pyarrow Tables: pip install pyarrow") from e
    return pyarrow


class SqlBatches:
    """The result of ``... EMIT CHANGES``: iterate to get ``pyarrow.RecordBatch`` es as
    input arrives (forever, until :meth:`close` or Ctrl-C). ``schema`` is the result's
    ``pyarrow.Schema``."""

    def __init__(self, schema, next_batch, close):
        self.schema = schema
        self._next = next_batch
        self._close = close

    def __iter__(self) -> "SqlBatches":
        return self

    def __next__(self):
        return self._next(None)

    def next(self, timeout: Optional[float] = None):
        """The next batch, or ``None`` if none came within ``timeout`` seconds."""
        return self._next(timeout)

    def close(self) -> None:
        """Stops the continuous query."""
        self._close()

    def __enter__(self) -> "SqlBatches":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def _result(kind, payload):
    pa = _pyarrow()
    if kind == "rows":
        return pa.ipc.open_stream(payload).read_all()
    native = payload

    def next_batch(timeout):
        got = native._next(timeout)
        if got is None:
            return None
        return pa.ipc.open_stream(got).read_next_batch()

    schema = pa.ipc.open_stream(native._schema()).schema
    return SqlBatches(schema, next_batch, native.close)


def _error_of(body: bytes, status: int) -> SqlError:
    try:
        e = json.loads(body)["error"]
        pos = e.get("position")
        text = e["message"]
        if pos:
            text += f" (line {pos['line']}, column {pos['column']})"
        if e.get("hint"):
            text += f"\nhint: {e['hint']}"
        return SqlError(text, position=(pos["line"], pos["column"]) if pos else None, hint=e.get("hint"))
    except (ValueError, KeyError, TypeError):
        return SqlError(f"the SQL server answered HTTP {status}: {body[:200]!r}")


def sql(query: str, server: str = "127.0.0.1:8083", timeout: Optional[float] = None) -> Union["pyarrow.Table", SqlBatches]:
    """Runs one SQL statement on a running ``samsa server`` (its HTTP address,
    ``--http-listen``): a ``pyarrow.Table`` for a bounded query or DDL, an iterator of
    ``pyarrow.RecordBatch`` for ``... EMIT CHANGES``."""
    pa = _pyarrow()
    body = json.dumps({"sql": query, "format": "arrow"}).encode()
    url = server if server.startswith("http") else f"http://{server}"
    req = urllib.request.Request(f"{url}/sql", data=body, headers={"Content-Type": "application/json"})
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise _error_of(e.read(), e.code) from None
    except urllib.error.URLError as e:
        raise BrokerUnavailableError(f"cannot reach the SQL server at {server}: {e.reason}. Is `samsa server` running with its HTTP API (--http-listen)?", retriable=True) from None
    reader = pa.ipc.open_stream(resp)
    if resp.headers.get("x-samsa-result") != "continuous":
        table = reader.read_all()
        resp.close()
        return table

    def next_batch(_timeout):
        try:
            return reader.read_next_batch()
        except StopIteration:
            rest = resp.read()
            resp.close()
            if rest:
                raise _error_of(rest, 200) from None
            raise

    return SqlBatches(reader.schema, next_batch, resp.close)
