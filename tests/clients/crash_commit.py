"""confluent-kafka group member for the crash test: consumes TOPIC from the beginning until
it has read at least 200 records from each of its 3 partitions, commits (synchronously) the
offset after the last record read in each, checks the commit with `committed`, and prints
the committed offsets as `RESULT committed=P:O,P:O,P:O`.

usage: crash_commit.py BOOTSTRAP TOPIC GROUP
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from samsa_common import check, result

bootstrap, topic, group = sys.argv[1:4]
consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
consumer.subscribe([topic])
counts = {}
next_offset = {}
deadline = time.monotonic() + 60
while not (len(counts) == 3 and min(counts.values()) >= 200):
    check(time.monotonic() < deadline, f"read only {counts} within 60 s")
    for msg in consumer.consume(num_messages=100, timeout=0.2):
        if msg.error():
            check(msg.error().code() == KafkaError._PARTITION_EOF, f"consume error {msg.error()}")
            continue
        p = msg.partition()
        counts[p] = counts.get(p, 0) + 1
        next_offset[p] = msg.offset() + 1
offsets = [TopicPartition(topic, p, o) for p, o in sorted(next_offset.items())]
for tp in consumer.commit(offsets=offsets, asynchronous=False):
    check(tp.error is None, f"commit {tp}: {tp.error}")
got = consumer.committed([TopicPartition(topic, p) for p in sorted(next_offset)], timeout=10)
check({tp.partition: tp.offset for tp in got} == next_offset, f"committed {got} want {next_offset}")
consumer.close()
result(committed=",".join(f"{p}:{o}" for p, o in sorted(next_offset.items())))
