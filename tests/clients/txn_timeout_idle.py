"""Transaction timeout with a live but idle producer: creates TOPIC (3 partitions), begins a
transaction with `transaction.timeout.ms` TIMEOUT_MS, writes `stuck-*` records to every
partition (flushed), then does nothing. A plain producer writes `after-*` records behind
it. A read_committed reader must not see them before the transaction timed out (the last
stable offset is held by the open transaction), must see them within a deadline (the
broker aborted it), and must never see a `stuck-*` record. The idle producer's later
commit must fail; afterwards read_committed still holds exactly the `after-*` records and
read_uncommitted all of them.

usage: txn_timeout_idle.py BOOTSTRAP TOPIC TIMEOUT_MS
"""

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from samsa_common import check, create_topic, log, result
from txn_common import describe, kafka_error, read_to_end, values

bootstrap, topic, timeout_ms = sys.argv[1], sys.argv[2], int(sys.argv[3])
PARTITIONS, PER_PARTITION = 3, 5
create_topic(bootstrap, topic, PARTITIONS)

producer = Producer({
    "bootstrap.servers": bootstrap,
    "transactional.id": f"{topic}-idle",
    "transaction.timeout.ms": timeout_ms,
    "linger.ms": 1,
})
producer.init_transactions(30)
# Before the transaction starts, so the broker's start timestamp is later than this.
started = time.monotonic()
producer.begin_transaction()
for p in range(PARTITIONS):
    for i in range(PER_PARTITION):
        producer.produce(topic, partition=p, value=f"stuck-p{p}-{i}".encode())
check(producer.flush(30) == 0, "stuck records not delivered")

plain = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
for p in range(PARTITIONS):
    for i in range(PER_PARTITION):
        plain.produce(topic, partition=p, value=f"after-p{p}-{i}".encode())
check(plain.flush(30) == 0, "after records not delivered")

after = {p: [f"after-p{p}-{i}" for i in range(PER_PARTITION)] for p in range(PARTITIONS)}
stuck = {p: [f"stuck-p{p}-{i}" for i in range(PER_PARTITION)] for p in range(PARTITIONS)}
want_count = PARTITIONS * PER_PARTITION

reader = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"{topic}-reader",
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
    "fetch.wait.max.ms": 50,
})
reader.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
seen = {p: [] for p in range(PARTITIONS)}
deadline = started + timeout_ms / 1000 + 30
first_visible_s = None
while sum(map(len, seen.values())) < want_count:
    check(time.monotonic() < deadline,
          f"read_committed saw only {seen} within {timeout_ms / 1000 + 30} s: "
          "the timed-out transaction was not aborted")
    for msg in reader.consume(num_messages=100, timeout=0.05):
        check(msg.error() is None, f"consume error {msg.error()}")
        if first_visible_s is None:
            first_visible_s = time.monotonic() - started
        seen[msg.partition()].append(msg.value().decode())
reader.close()
check(seen == after, f"read_committed saw {seen}, want only {after}")
log(f"after records visible {first_visible_s:.2f} s after the transaction began")
# The last stable offset cannot pass the open transaction before it times out.
check(first_visible_s >= timeout_ms / 1000 * 0.95,
      f"records behind the open transaction visible after {first_visible_s:.2f} s, "
      f"before its {timeout_ms} ms timeout")

commit_error = None
try:
    producer.commit_transaction(30)
except KafkaException as e:
    commit_error = kafka_error(e)
check(commit_error is not None, "the idle producer committed a transaction the broker timed out")
log(f"idle producer's commit failed: {commit_error}")

rc = values(read_to_end(bootstrap, topic, PARTITIONS, "read_committed"))
check(rc == after, f"read_committed after the failed commit saw {rc}, want {after}")
ru = values(read_to_end(bootstrap, topic, PARTITIONS, "read_uncommitted"))
check(ru == {p: stuck[p] + after[p] for p in range(PARTITIONS)}, f"read_uncommitted saw {ru}")
result(visible_s=f"{first_visible_s:.2f}", commit_error=describe(commit_error),
       read_committed=sum(map(len, rc.values())), read_uncommitted=sum(map(len, ru.values())))
