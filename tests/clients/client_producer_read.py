"""confluent-kafka reader for the Rust producer tests: read every partition of a topic from
the beginning up to its high watermark (no consumer group) and dump each record.

usage: client_producer_read.py BOOTSTRAP TOPIC OUT_FILE

OUT_FILE gets one line per record, partition by partition in offset order:
    PARTITION OFFSET TIMESTAMP_TYPE TIMESTAMP KEY VALUE HEADERS
KEY and VALUE are `x` followed by hex (so `x` alone is zero-length), or `-` for NULL;
HEADERS is `-` when there are none, else `name=VALUE,name=VALUE` with VALUE encoded the
same way. TIMESTAMP_TYPE is 1 for CreateTime, 2 for LogAppendTime.
Prints `RESULT consumed=N partitions=P`.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, TopicPartition

from samsa_common import DEADLINE_S, check, log, result

bootstrap, topic, out_file = sys.argv[1:4]


def enc(b):
    return "-" if b is None else "x" + b.hex()


consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "client-producer-reader",  # required by librdkafka; never joined or committed
    "enable.auto.commit": False,
    "enable.partition.eof": True,
    "auto.offset.reset": "earliest",
})
md = consumer.list_topics(topic=topic, timeout=30)
t = md.topics.get(topic)
check(t is not None and t.error is None and t.partitions, f"topic {topic} metadata: {t}")
partitions = sorted(t.partitions)
high = {}
for p in partitions:
    low, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
    high[p] = hi
log(f"{topic}: high watermarks {high}")

consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
records = {p: [] for p in partitions}
done = {p for p in partitions if high[p] == 0}
deadline = time.monotonic() + DEADLINE_S
while len(done) < len(partitions):
    check(time.monotonic() < deadline, f"not at the high watermarks {high} after {DEADLINE_S} s: done {done}")
    msg = consumer.poll(0.2)
    if msg is None:
        continue
    if msg.error():
        if msg.error().code() == KafkaError._PARTITION_EOF:
            if msg.offset() >= high[msg.partition()]:
                done.add(msg.partition())
            continue
        raise AssertionError(f"consume error: {msg.error()}")
    p = msg.partition()
    if msg.offset() >= high[p]:
        continue
    ts_type, ts = msg.timestamp()
    headers = msg.headers()
    hdrs = "-" if not headers else ",".join(f"{k}={enc(v)}" for k, v in headers)
    records[p].append(f"{p} {msg.offset()} {ts_type} {ts} {enc(msg.key())} {enc(msg.value())} {hdrs}")
    if msg.offset() + 1 >= high[p]:
        done.add(p)
consumer.close()

n = 0
with open(out_file, "w") as f:
    for p in partitions:
        for line in records[p]:
            f.write(line + "\n")
            n += 1
result(consumed=n, partitions=len(partitions))
