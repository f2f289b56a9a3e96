"""Checks how a transaction ended on every partition of TOPIC: writes one plain sentinel
record per partition, then reads with read_committed until every sentinel arrives (which
needs the last stable offset past the transaction, i.e. its markers written). Prints how
many records of each TAG (values `TAG-p-i`) were seen per partition, as
`TAG_p=count`, and fails on a duplicate or out-of-order value.

usage: cluster_txn_verify.py BOOTSTRAP TOPIC SENTINEL_TAG TAG [TAG ...]
"""

import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from samsa_common import check, log, result

bootstrap, topic, sentinel = sys.argv[1:4]
tags = sys.argv[4:]

producer = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
for p in range(3):
    producer.produce(topic, value=f"{sentinel}-{p}".encode(), partition=p)
check(producer.flush(30) == 0, "sentinels not delivered")

consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"verify-{sentinel}",
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
})
consumer.assign([TopicPartition(topic, p, 0) for p in range(3)])
seen = {(t, p): [] for t in tags for p in range(3)}
sentinels = set()
deadline = time.time() + 60
while len(sentinels) < 3 and time.time() < deadline:
    msg = consumer.poll(0.5)
    if msg is None or msg.error():
        continue
    value = msg.value().decode()
    if value.startswith(sentinel + "-"):
        sentinels.add(msg.partition())
        continue
    parts = value.rsplit("-", 2)
    if len(parts) != 3 or parts[0] not in tags:
        continue  # other transactions' records and earlier sentinels
    tag, p, i = parts
    check(int(p) == msg.partition(), f"{value} read from partition {msg.partition()}")
    seen[(tag, msg.partition())].append(int(i))
consumer.close()
check(len(sentinels) == 3, f"only partitions {sorted(sentinels)} became readable past the transaction within 60 s")
for (tag, p), ids in seen.items():
    check(ids == list(range(len(ids))), f"{tag} on partition {p}: out of order or duplicated: {ids[:20]}")
log("seen", {f"{t}_{p}": len(v) for (t, p), v in seen.items()})
result(**{f"{t}_{p}": len(v) for (t, p), v in seen.items()})
