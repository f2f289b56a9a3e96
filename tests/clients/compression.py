"""confluent-kafka: produce N records with one compression codec and acks=all, then consume
them back through a consumer group and compare exactly.

usage: compression.py BOOTSTRAP CODEC N
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from samsa_common import check, create_topic, log, result

bootstrap, codec, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
topic = f"compressed-{codec}"
partitions = 3
create_topic(bootstrap, topic, partitions)


def value_of(i):
    # Repetitive so that every codec really compresses it.
    return (f"{codec}-record-{i:06d}|" * 8).encode()


producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "compression.type": codec,
    "enable.idempotence": False,
    "linger.ms": 20,
    "batch.num.messages": 500,
})
delivered = {}  # (partition, offset) -> index
errors = []


def on_delivery(err, msg):
    if err is not None:
        errors.append(str(err))
    else:
        delivered[(msg.partition(), msg.offset())] = int(msg.key().decode()[1:])


for i in range(n):
    while True:
        try:
            producer.produce(topic, key=f"k{i}".encode(), value=value_of(i), on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)
left = producer.flush(60)
check(left == 0, f"{left} records not delivered within 60 s")
check(not errors, f"delivery errors: {errors[:5]}")
check(len(delivered) == n, f"{len(delivered)} distinct (partition, offset) acks, want {n}")
log(f"produced {n} records with {codec}")

consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"group-{codec}",
    "auto.offset.reset": "earliest",
    "enable.auto.commit": False,
})
consumer.subscribe([topic])
received = {}
last_offset = {}
deadline = time.monotonic() + 60
while len(received) < n and time.monotonic() < deadline:
    for msg in consumer.consume(num_messages=500, timeout=0.2):
        if msg.error():
            check(msg.error().code() == KafkaError._PARTITION_EOF, f"consume error {msg.error()}")
            continue
        p, off = msg.partition(), msg.offset()
        check(off > last_offset.get(p, -1), f"partition {p}: offset {off} after {last_offset.get(p)}")
        last_offset[p] = off
        check((p, off) not in received, f"({p}, {off}) delivered twice")
        i = int(msg.key().decode()[1:])
        check(msg.value() == value_of(i), f"({p}, {off}) value {msg.value()[:40]!r} differs for key k{i}")
        received[(p, off)] = i
check(received == delivered, f"consumed {len(received)} records, produced {n}; "
      f"missing {sorted(set(delivered) - set(received))[:5]}")

ends = {p: last_offset[p] + 1 for p in last_offset}
consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in ends.items()], asynchronous=False)
committed = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
for tp in committed:
    check(tp.error is None, f"committed() error {tp.error}")
    check(tp.offset == ends.get(tp.partition, -1001), f"committed {tp} want {ends.get(tp.partition)}")
consumer.close()
result(codec=codec, produced=len(delivered), consumed=len(received))
