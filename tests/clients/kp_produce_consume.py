"""kafka-python: produce N keyed records (acks=all), then consume them with a consumer
group, commit, and check the committed offsets equal the log end.

usage: kp_produce_consume.py BOOTSTRAP N
"""

import logging
import sys
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from samsa_common import check, result

logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
bootstrap, n = sys.argv[1], int(sys.argv[2])
topic = "kp-data"
partitions = 3

admin = KafkaAdminClient(bootstrap_servers=bootstrap)
admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
deadline = time.monotonic() + 30
while topic not in admin.list_topics():
    check(time.monotonic() < deadline, f"{topic} not listed after creation")
    time.sleep(0.05)
admin.close()

# No InitProducerId in Samsa yet: kafka-python 3 turns idempotence on by default.
producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
futures = [producer.send(topic, key=f"key-{i}".encode(), value=f"value-{i}".encode())
           for i in range(n)]
producer.flush(30)
sent = {}
for i, fut in enumerate(futures):
    md = fut.get(timeout=30)
    check((md.partition, md.offset) not in sent, f"({md.partition}, {md.offset}) acked twice")
    sent[(md.partition, md.offset)] = i
producer.close()

consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="kp-group",
                         auto_offset_reset="earliest", enable_auto_commit=False)
received = {}
deadline = time.monotonic() + 60
while len(received) < n:
    check(time.monotonic() < deadline, f"received {len(received)} of {n} in 60 s")
    for tp, records in consumer.poll(timeout_ms=200).items():
        for r in records:
            i = int(r.key.decode()[4:])
            check(r.value == f"value-{i}".encode(), f"value {r.value!r} for key {r.key!r}")
            check((r.partition, r.offset) not in received, f"({r.partition}, {r.offset}) twice")
            received[(r.partition, r.offset)] = i
check(received == sent, "consumed records differ from produced ones")
consumer.commit()
tps = [TopicPartition(topic, p) for p in range(partitions)]
ends = consumer.end_offsets(tps)
for tp in tps:
    check(consumer.committed(tp) == ends[tp], f"{tp}: committed {consumer.committed(tp)}, end {ends[tp]}")
consumer.close()
result(produced=len(sent), consumed=len(received))
