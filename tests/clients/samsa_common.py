"""Helpers shared by the Python client scripts of Samsa's end-to-end tests.

Scripts print their summary as one `RESULT key=value ...` line on stdout; everything else
(client logging, progress) goes to stderr. A failed check raises, so the script exits
non-zero and the Rust test shows its output.
"""

import sys
import time

DEADLINE_S = 60.0


def log(*args):
    """Progress message to stderr."""
    print(*args, file=sys.stderr, flush=True)


def result(**fields):
    """The summary line that the Rust side parses."""
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()), flush=True)


def check(cond, msg):
    """Fails the script with `msg` unless `cond` holds."""
    if not cond:
        raise AssertionError(msg)


def murmur2(data: bytes) -> int:
    """Kafka's Utils.murmur2 (the Java producer's key hash) as an unsigned 32-bit value."""
    m = 0x5BD1E995
    r = 24
    mask = 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(length // 4):
        i4 = i * 4
        k = data[i4] | (data[i4 + 1] << 8) | (data[i4 + 2] << 16) | (data[i4 + 3] << 24)
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    tail = length & ~3
    rest = length % 4
    if rest == 3:
        h ^= data[tail + 2] << 16
    if rest >= 2:
        h ^= data[tail + 1] << 8
    if rest >= 1:
        h ^= data[tail]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def java_partition(key: bytes, num_partitions: int) -> int:
    """The partition Java's default partitioner picks for a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % num_partitions


def _as_signed(h):
    return h - (1 << 32) if h & 0x80000000 else h


# Reference values from Kafka's own unit test of Utils.murmur2 (signed Java ints).
_MURMUR2_VECTORS = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}


def self_test_murmur2():
    """Checks murmur2 against Kafka's reference values."""
    for data, want in _MURMUR2_VECTORS.items():
        got = _as_signed(murmur2(data))
        check(got == want, f"murmur2({data!r}) = {got}, want {want}")


def create_topic(bootstrap, name, partitions, config=None, timeout=DEADLINE_S, replication_factor=1, exist_ok=False):
    """Creates a topic with confluent-kafka's AdminClient and waits until its metadata
    shows every partition with a leader."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=replication_factor, config=config or {})],
        operation_timeout=30,
    )
    try:
        futures[name].result(timeout=timeout)
    except KafkaException as e:
        if not (exist_ok and e.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS):
            raise
    wait_topic(admin, name, partitions, timeout)
    return admin


def wait_topic(admin, name, partitions, timeout=DEADLINE_S):
    """Polls metadata until `name` has `partitions` partitions, each with a leader."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        md = admin.list_topics(topic=name, timeout=10)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions and all(
            p.leader >= 0 for p in t.partitions.values()
        ):
            return
        last = t
        time.sleep(0.05)
    raise AssertionError(f"topic {name} not ready with {partitions} partitions: {last}")


def wait_assignment(consumer, want_count, timeout=DEADLINE_S):
    """Polls a subscribed consumer until it owns `want_count` partitions."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        consumer.poll(0.05)
        if len(consumer.assignment()) == want_count:
            return
    raise AssertionError(f"consumer assignment {consumer.assignment()} never reached {want_count}")


if __name__ == "__main__":
    self_test_murmur2()
    print("murmur2 ok")
