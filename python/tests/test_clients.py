"""Samsa's Python producer and consumer, with confluent-kafka on the other side."""

import asyncio
import subprocess
import threading
import time

import confluent_kafka
import pytest

import samsa
from conftest import python_script

N = 2_000


def test_confluent_kafka_produces_and_samsa_consumer_reads_everything(broker):
    samsa.Admin(broker.bootstrap).create_topic("from-ck", partitions=3)
    p = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(N):
        p.produce("from-ck", key=f"k{i % 17}", value=f"v{i}", headers=[("h", b"x")])
    assert p.flush(30) == 0
    c = samsa.Consumer(broker.bootstrap, group_id="g1", topics=["from-ck"], auto_offset_reset="earliest")
    seen = {}
    deadline = time.monotonic() + 60
    while len(seen) < N and time.monotonic() < deadline:
        for m in c.consume(500, timeout=1):
            seen[m.value] = (m.key, m.headers)
    c.commit()
    c.close()
    assert len(seen) == N
    assert seen[b"v5"] == (b"k5", [("h", b"x")])


def test_samsa_producer_and_confluent_kafka_consumer_reads_everything(broker):
    samsa.Admin(broker.bootstrap).create_topic("to-ck", partitions=3)
    p = samsa.Producer(broker.bootstrap, acks="all", enable_idempotence=True)
    futs = [p.send("to-ck", f"v{i}", key=f"k{i % 13}") for i in range(N)]
    p.flush()
    metas = [f.result(10) for f in futs]
    assert {m.partition for m in metas} == {0, 1, 2}
    c = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ck", "auto.offset.reset": "earliest"})
    c.subscribe(["to-ck"])
    got = set()
    deadline = time.monotonic() + 60
    while len(got) < N and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and m.error() is None:
            got.add(m.value())
    c.close()
    assert got == {f"v{i}".encode() for i in range(N)}


def test_transactions_commit_and_abort(broker):
    samsa.Admin(broker.bootstrap).create_topic("tx", partitions=1)
    p = samsa.Producer(broker.bootstrap, transactional_id="py-tx")
    p.init_transactions()
    p.begin_transaction()
    p.send("tx", b"aborted")
    p.abort_transaction()
    p.begin_transaction()
    p.send("tx", b"committed")
    p.commit_transaction()
    c = samsa.Consumer(broker.bootstrap, group_id="txr", topics=["tx"], auto_offset_reset="earliest", isolation_level="read_committed")
    m = c.poll(20)
    assert m is not None and m.value == b"committed"
    assert c.poll(1) is None


def test_seek_commit_and_rebalance_callbacks(broker):
    samsa.Admin(broker.bootstrap).create_topic("seek", partitions=1)
    p = samsa.Producer(broker.bootstrap)
    for i in range(10):
        p.send("seek", str(i))
    p.flush()
    assigned = []
    c = samsa.Consumer(broker.bootstrap, group_id="sk", topics=["seek"], auto_offset_reset="earliest", enable_auto_commit=False, on_assign=assigned.extend)
    first = c.poll(20)
    assert first.value == b"0" and assigned == [("seek", 0)]
    c.commit()
    assert c.committed([("seek", 0)]) == {("seek", 0): 1}
    c.seek("seek", 0, 7)
    assert c.poll(10).value == b"7"
    assert c.position("seek", 0) == 8
    c.close()


def test_errors_are_typed():
    with pytest.raises(samsa.ConfigError) as bad:
        samsa.Producer("127.0.0.1:9", acks="sometimes")
    assert isinstance(bad.value, ValueError) and "acks" in str(bad.value)
    with pytest.raises(samsa.BrokerUnavailableError) as down:
        samsa.Producer("127.0.0.1:1")
    assert "127.0.0.1:1" in str(down.value) and down.value.retriable


def test_kafka_error_codes_reach_python(broker):
    samsa.Admin(broker.bootstrap).create_topic("dup")
    with pytest.raises(samsa.KafkaError) as e:
        samsa.Admin(broker.bootstrap).create_topic("dup")
    assert (e.value.code, e.value.name) == (36, "TOPIC_ALREADY_EXISTS")


def test_poll_releases_the_gil(broker):
    samsa.Admin(broker.bootstrap).create_topic("quiet")
    c = samsa.Consumer(broker.bootstrap, group_id="q", topics=["quiet"])
    ticks = 0
    stop = threading.Event()

    def spin():
        nonlocal ticks
        while not stop.is_set():
            ticks += 1

    t = threading.Thread(target=spin)
    start = time.monotonic()
    t.start()
    before = ticks
    assert c.poll(2) is None
    waited = time.monotonic() - start
    during = ticks - before
    stop.set()
    t.join()
    assert waited >= 1.9
    # A thread blocked on the GIL would tick only in the interpreter's switch intervals
    # (5 ms); a free one ticks millions of times in 2 s.
    assert during > 100_000, during


def test_ctrl_c_interrupts_poll(broker, tmp_path):
    samsa.Admin(broker.bootstrap).create_topic("idle")
    cmd = python_script(
        tmp_path,
        "poll.py",
        f"""
import sys, time, samsa
c = samsa.Consumer("{broker.bootstrap}", group_id="idle", topics=["idle"])
print("polling", flush=True)
start = time.monotonic()
try:
    c.poll(30)
    print("returned", flush=True)
except KeyboardInterrupt:
    print("interrupted after %.1f s" % (time.monotonic() - start), flush=True)
""",
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "polling"
        time.sleep(0.5)
        proc.send_signal(2)
        out, _ = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert out.startswith("interrupted after"), out
    assert float(out.split()[2]) < 10


def test_asyncio_flavour(broker):
    async def main():
        async with samsa.aio.Producer(broker.bootstrap) as p:
            meta = await p.send("aio", b"one", key=b"k")
            metas = await p.send_batch("aio", [b"two", b"three"])
        assert meta.offset == 0 and [m.offset for m in metas] == [1, 2]
        async with samsa.aio.Consumer(broker.bootstrap, group_id="aio", topics=["aio"], auto_offset_reset="earliest") as c:
            got = []
            async for m in c:
                got.append(m.value)
                if len(got) == 3:
                    break
        return got

    assert asyncio.run(main()) == [b"one", b"two", b"three"]
