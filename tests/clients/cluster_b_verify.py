"""Reads every partition of TOPIC from its log start to its high watermark (through the
current leaders) and checks the acknowledged records of ACKED_FILE (`partition offset
value` lines) against it: each one is stored at its acknowledged offset with its value,
and no value is stored twice anywhere in the topic (exactly once).

Prints what it found as a RESULT line; examples of problems go to stderr. It does not fail
on a mismatch: the Rust test asserts on the counts and shows this script's stderr.

usage: cluster_b_verify.py BOOTSTRAP TOPIC PARTITIONS ACKED_FILE
"""

import sys
import time
from collections import Counter

from confluent_kafka import Consumer, KafkaError, TopicPartition
from confluent_kafka.admin import AdminClient

from samsa_common import check, log, result, wait_topic

bootstrap, topic, partitions, acked_path = sys.argv[1:5]
partitions = int(partitions)
wait_topic(AdminClient({"bootstrap.servers": bootstrap}), topic, partitions)

acked = {}
with open(acked_path) as f:
    for line in f:
        if not line.endswith("\n"):
            break
        p, off, value = line.split()
        key = (int(p), int(off))
        check(key not in acked, f"two acknowledgements for {key}: {acked.get(key)} and {value}")
        acked[key] = value
check(acked, "no acknowledged records to check")

reader = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "cluster-b-verify",
    "enable.auto.commit": False,
    "enable.partition.eof": False,
})
bounds = {}
for p in range(partitions):
    low, high = reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
    bounds[p] = (low, high)
log(f"watermarks {bounds}")

stored = {}
pending = {p for p, (low, high) in bounds.items() if high > low}
reader.assign([TopicPartition(topic, p, bounds[p][0]) for p in pending])
deadline = time.monotonic() + 90
while pending:
    check(time.monotonic() < deadline, f"reading {bounds} timed out; pending {pending}")
    for msg in reader.consume(num_messages=1000, timeout=0.2):
        if msg.error():
            check(msg.error().code() == KafkaError._PARTITION_EOF, f"consume error {msg.error()}")
            continue
        p, off = msg.partition(), msg.offset()
        if off < bounds[p][1]:
            check((p, off) not in stored, f"offset ({p}, {off}) delivered twice in one read")
            stored[(p, off)] = msg.value().decode()
        if off + 1 >= bounds[p][1]:
            pending.discard(p)
reader.close()

missing = [(k, v, stored.get(k)) for k, v in sorted(acked.items()) if stored.get(k) != v]
counts = Counter(stored.values())
duplicates = sorted(v for v, n in counts.items() if n > 1)
acked_values = set(acked.values())
unacked = sorted(v for v in counts if v not in acked_values)
gaps = 0
for p, (low, high) in bounds.items():
    gaps += sum(1 for off in range(low, high) if (p, off) not in stored)
if missing:
    log(f"{len(missing)} acknowledged records not at their offset, e.g. {missing[:10]}")
if duplicates:
    where = {v: sorted(k for k, x in stored.items() if x == v) for v in duplicates[:10]}
    log(f"{len(duplicates)} values stored more than once, e.g. {where}")
if unacked:
    log(f"{len(unacked)} stored values were never acknowledged, e.g. {unacked[:10]}")
per_partition = {p: high - low for p, (low, high) in bounds.items()}
result(acked=len(acked), stored=len(stored), missing=len(missing), duplicates=len(duplicates),
       unacked_stored=len(unacked), gaps=gaps,
       per_partition=",".join(f"{p}:{n}" for p, n in sorted(per_partition.items())))
