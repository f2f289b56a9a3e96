"""The asyncio flavour of Samsa's producer and consumer.

Each blocking call runs on a worker thread (the native calls release the GIL), so the
event loop keeps running::

    async with samsa.aio.Producer(bootstrap) as p:
        meta = await p.send("topic", b"value")
"""

import asyncio
from typing import Any, Dict, List, Optional

from . import _samsa


def _wrap(fut: "_samsa.DeliveryFuture") -> "asyncio.Future":
    loop = asyncio.get_running_loop()
    out = loop.create_future()

    def done(f):
        def settle():
            if out.cancelled():
                return
            try:
                out.set_result(f.result(0))
            except BaseException as e:  # delivered as the awaitable's exception
                out.set_exception(e)

        loop.call_soon_threadsafe(settle)

    fut.add_done_callback(done)
    return out


class Producer:
    """``samsa.Producer`` for asyncio: ``await send(...)`` gives the ``RecordMetadata``."""

    def __init__(self, bootstrap: str, config: Optional[Dict[str, Any]] = None, **kwargs: Any):
        self._p = _samsa.Producer(bootstrap, config, **kwargs)

    async def send(self, topic: str, value=None, key=None, headers=None, partition: Optional[int] = None, timestamp: Optional[int] = None):
        """Sends one record and waits for its acknowledgement."""
        fut = await asyncio.to_thread(self._p.send, topic, value, key, headers, partition, timestamp)
        return await _wrap(fut)

    async def send_batch(self, topic: str, records) -> List[Any]:
        """Sends many records (see ``samsa.Producer.send_batch``); returns their metadata."""
        futs = await asyncio.to_thread(self._p.send_batch, topic, list(records))
        return list(await asyncio.gather(*[_wrap(f) for f in futs]))

    async def flush(self, timeout: Optional[float] = None) -> None:
        """Waits until everything queued is acknowledged."""
        await asyncio.to_thread(self._p.flush, timeout)

    async def close(self) -> None:
        """Flushes and closes."""
        await asyncio.to_thread(self._p.close)

    async def __aenter__(self) -> "Producer":
        return self

    async def __aexit__(self, *exc) -> bool:
        await self.close()
        return False


class Consumer:
    """``samsa.Consumer`` for asyncio; ``async for msg in consumer`` yields messages."""

    def __init__(self, bootstrap: str, group_id: Optional[str] = None, topics: Optional[List[str]] = None, config: Optional[Dict[str, Any]] = None, **kwargs: Any):
        self._c = _samsa.Consumer(bootstrap, group_id, topics, None, None, config, **kwargs)

    async def poll(self, timeout: Optional[float] = None):
        """The next message, or ``None`` after ``timeout`` seconds."""
        return await asyncio.to_thread(self._c.poll, timeout)

    async def consume(self, num_messages: int = 500, timeout: Optional[float] = None):
        """Up to ``num_messages`` messages."""
        return await asyncio.to_thread(self._c.consume, num_messages, timeout)

    async def commit(self, offsets=None) -> None:
        """Commits the positions of the messages returned so far (or ``offsets``)."""
        await asyncio.to_thread(self._c.commit, offsets)

    def __aiter__(self) -> "Consumer":
        return self

    async def __anext__(self):
        while True:
            m = await self.poll(1.0)
            if m is not None:
                return m

    async def close(self) -> None:
        """Commits (with auto-commit) and leaves the group."""
        await asyncio.to_thread(self._c.close)

    async def __aenter__(self) -> "Consumer":
        return self

    async def __aexit__(self, *exc) -> bool:
        await self.close()
        return False
