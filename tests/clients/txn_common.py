"""Helpers shared by the transaction scripts (`txn_*.py`) of Samsa's end-to-end tests.

`read_to_end` reads whole partitions with a given isolation level and returns only once
every partition is read up to its high watermark: for read_committed that also means every
transaction on it is resolved (the last stable offset reached the high watermark), so a
complete read can be compared with an exact expected list.
"""

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from samsa_common import DEADLINE_S, check

FENCING_CODES = {
    KafkaError._FENCED,
    KafkaError.PRODUCER_FENCED,
    KafkaError.INVALID_PRODUCER_EPOCH,
}


def read_to_end(bootstrap, topic, partitions, isolation, timeout=DEADLINE_S, group=None):
    """Every record of `topic`'s partitions `0..partitions` from the beginning, read with
    `isolation` ("read_committed" or "read_uncommitted"), as {partition: [(offset, key,
    value)]} in log order, values and keys decoded. Returns once every partition's position
    has reached its high watermark and the consumer has reported the partition's end."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group or f"txn-reader-{isolation}-{time.monotonic_ns()}",
        "isolation.level": isolation,
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "fetch.wait.max.ms": 50,
    })
    tps = [TopicPartition(topic, p, 0) for p in range(partitions)]
    consumer.assign(tps)
    records = {p: [] for p in range(partitions)}
    at_eof = set()
    deadline = time.monotonic() + timeout
    try:
        while True:
            for msg in consumer.consume(num_messages=500, timeout=0.1):
                err = msg.error()
                if err is not None:
                    check(err.code() == KafkaError._PARTITION_EOF, f"consume error {err}")
                    at_eof.add(msg.partition())
                    continue
                at_eof.discard(msg.partition())
                key = msg.key().decode() if msg.key() is not None else None
                records[msg.partition()].append((msg.offset(), key, msg.value().decode()))
            if len(at_eof) == partitions and _at_high_watermarks(consumer, tps):
                return records
            if time.monotonic() >= deadline:
                positions = {tp.partition: tp.offset for tp in consumer.position(tps)}
                marks = {
                    tp.partition: consumer.get_watermark_offsets(tp, timeout=5, cached=False)
                    for tp in tps
                }
                raise AssertionError(
                    f"{isolation} read of {topic} not at its end within {timeout} s: "
                    f"positions {positions}, watermarks {marks}, at eof {sorted(at_eof)}, "
                    f"read {[len(r) for r in records.values()]}")
    finally:
        consumer.close()


def _at_high_watermarks(consumer, tps):
    for tp in consumer.position(tps):
        _, high = consumer.get_watermark_offsets(tp, timeout=5, cached=False)
        if tp.offset < 0 or tp.offset < high:
            return False
    return True


def values(records):
    """{partition: [value]} of a `read_to_end` result."""
    return {p: [v for _, _, v in rs] for p, rs in records.items()}


def is_fencing_error(err):
    """Whether a KafkaError says this producer was fenced by a newer one."""
    return err is not None and err.code() in FENCING_CODES


def kafka_error(exc):
    """The KafkaError of a KafkaException."""
    check(isinstance(exc, KafkaException), f"not a KafkaException: {exc!r}")
    return exc.args[0]


def describe(err):
    """A one-word description of a KafkaError for RESULT lines."""
    return f"{err.name()}/fatal={int(err.fatal())}/abortable={int(err.txn_requires_abort())}"

