"""confluent-kafka checks after the crashed broker restarted on its data directory:
every record listed in ACKED_FILE is readable at its (partition, offset) with its value,
the group's committed offsets equal COMMITTED (`P:O,...`), and new writes succeed and read
back.

usage: crash_verify.py BOOTSTRAP TOPIC ACKED_FILE GROUP COMMITTED
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from samsa_common import check, log, result, wait_topic

bootstrap, topic, acked_path, group, committed_arg = sys.argv[1:6]
PARTITIONS = 3
wait_topic(AdminClient({"bootstrap.servers": bootstrap}), topic, PARTITIONS)

acked = {}
with open(acked_path) as f:
    for line in f:
        if not line.endswith("\n"):
            break  # a torn last line (the producer is gone by now, but be safe)
        p, off, value = line.split()
        acked[(int(p), int(off))] = value
check(acked, "no acknowledged records to check")


def read_range(consumer, ranges):
    """Reads [start, end) of each partition; returns {(p, offset): value}."""
    consumer.assign([TopicPartition(topic, p, start) for p, (start, end) in ranges.items()
                     if end > start])
    pending = {p for p, (start, end) in ranges.items() if end > start}
    got = {}
    deadline = time.monotonic() + 60
    while pending:
        check(time.monotonic() < deadline, f"reading {ranges} timed out; pending {pending}")
        for msg in consumer.consume(num_messages=1000, timeout=0.2):
            if msg.error():
                check(msg.error().code() == KafkaError._PARTITION_EOF, f"consume error {msg.error()}")
                continue
            p, off = msg.partition(), msg.offset()
            if off < ranges[p][1]:
                got[(p, off)] = msg.value().decode()
            if off + 1 >= ranges[p][1]:
                pending.discard(p)
    consumer.unassign()
    return got


reader = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "crash-verify-reader",
    "enable.auto.commit": False,
    "enable.partition.eof": False,
})
high = {}
for p in range(PARTITIONS):
    low, hi = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
    max_acked = max((off for (q, off) in acked if q == p), default=-1)
    check(low == 0, f"partition {p}: log start {low} after restart, want 0")
    check(hi > max_acked, f"partition {p}: high watermark {hi} after restart, but offset "
          f"{max_acked} was acknowledged")
    high[p] = hi
log(f"high watermarks after restart {high}, acknowledged {len(acked)}")
stored = read_range(reader, {p: (0, high[p]) for p in range(PARTITIONS)})
missing = [(k, v) for k, v in acked.items() if stored.get(k) != v]
check(not missing, f"{len(missing)} acknowledged records lost or changed, e.g. "
      f"{[(k, v, stored.get(k)) for k, v in missing[:5]]}")

want_committed = {int(p): int(o) for p, o in (kv.split(":") for kv in committed_arg.split(","))}
member = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
got = member.committed([TopicPartition(topic, p) for p in sorted(want_committed)], timeout=10)
got_committed = {tp.partition: tp.offset for tp in got}
check(got_committed == want_committed,
      f"group {group} committed offsets after restart {got_committed}, want {want_committed}")
member.close()

producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False})
new = {}
errors = []


def on_delivery(err, msg):
    if err is not None:
        errors.append(str(err))
    else:
        new[(msg.partition(), msg.offset())] = msg.value().decode()


for i in range(100):
    producer.produce(topic, key=f"after-{i}".encode(), value=f"after-restart-{i}".encode(),
                     on_delivery=on_delivery)
check(producer.flush(30) == 0, "new records not delivered after restart")
check(not errors and len(new) == 100, f"new writes after restart: {len(new)} acked, {errors[:3]}")
for (p, off) in new:
    check(off >= high[p], f"new record at ({p}, {off}) is below the old high watermark {high[p]}")
ranges = {p: (high[p], max([off + 1 for (q, off) in new if q == p], default=high[p]))
          for p in range(PARTITIONS)}
read_back = read_range(reader, ranges)
check(all(read_back.get(k) == v for k, v in new.items()), "new records do not read back")
reader.close()
result(acked_checked=len(acked), new=len(new), committed=committed_arg)
