"""confluent-kafka reader for the end-to-end tests: reads every partition of a topic from
the beginning up to its high watermark (no consumer group) and dumps each record.

usage: read_partitions.py BOOTSTRAP TOPIC OUT_FILE [full|values]

One line per record in OUT_FILE, partitions in order, offsets ascending:
- `full` (the default): `PARTITION OFFSET TIMESTAMP_TYPE TIMESTAMP KEY VALUE HEADERS`, with
  KEY and VALUE as `x` followed by hex (so `x` alone is zero-length) or `-` for NULL;
  HEADERS is `-` when there are none, else `name=VALUE,name=VALUE` with VALUE encoded the
  same way. TIMESTAMP_TYPE is 1 for CreateTime, 2 for LogAppendTime.
- `values`: `PARTITION OFFSET VALUE`, VALUE decoded as UTF-8 (`-` for NULL).
Prints `RESULT consumed=N partitions=P high=p:hw,p:hw,...`. Watermark lookups are retried
(a cluster may still be moving leaders) for up to 120 s.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from samsa_common import check, log, result

bootstrap, topic, out_file = sys.argv[1:4]
fmt = sys.argv[4] if len(sys.argv) > 4 else "full"
check(fmt in ("full", "values"), f"unknown format {fmt}")
DEADLINE_S = 120.0
deadline = time.monotonic() + DEADLINE_S


def enc(b):
    return "-" if b is None else "x" + b.hex()


def line(msg):
    p, v = msg.partition(), msg.value()
    if fmt == "values":
        return f"{p} {msg.offset()} {'-' if v is None else v.decode()}"
    ts_type, ts = msg.timestamp()
    headers = msg.headers()
    hdrs = "-" if not headers else ",".join(f"{k}={enc(h)}" for k, h in headers)
    return f"{p} {msg.offset()} {ts_type} {ts} {enc(msg.key())} {enc(v)} {hdrs}"


consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "partition-reader",  # required by librdkafka; never joined or committed
    "enable.auto.commit": False,
    "enable.partition.eof": True,
    "auto.offset.reset": "earliest",
    "topic.metadata.refresh.interval.ms": 1000,
})
md = consumer.list_topics(topic=topic, timeout=30)
t = md.topics.get(topic)
check(t is not None and t.error is None and t.partitions, f"topic {topic} metadata: {t}")
partitions = sorted(t.partitions)
high = {}
for p in partitions:
    while True:
        try:
            low, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            high[p] = hi
            break
        except KafkaException as e:
            check(time.monotonic() < deadline, f"no watermarks for partition {p}: {e}")
            log(f"watermarks of partition {p}: {e}; retrying")
            time.sleep(0.2)
log(f"{topic}: high watermarks {high}")

consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
records = {p: [] for p in partitions}
done = {p for p in partitions if high[p] == 0}
while len(done) < len(partitions):
    check(time.monotonic() < deadline, f"not at the high watermarks {high} after {DEADLINE_S} s: done {done}")
    for msg in consumer.consume(num_messages=1000, timeout=0.2):
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                if msg.offset() >= high[msg.partition()]:
                    done.add(msg.partition())
                continue
            raise AssertionError(f"consume error: {msg.error()}")
        p = msg.partition()
        if msg.offset() >= high[p]:
            continue
        records[p].append(line(msg))
        if msg.offset() + 1 >= high[p]:
            done.add(p)
consumer.close()

n = 0
with open(out_file, "w") as f:
    for p in partitions:
        for rec in records[p]:
            f.write(rec + "\n")
            n += 1
result(consumed=n, partitions=len(partitions), high=",".join(f"{p}:{high[p]}" for p in partitions))
