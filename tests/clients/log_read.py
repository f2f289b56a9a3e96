"""confluent-kafka reader for the log policy tests: the watermarks of partition 0 of TOPIC
(ListOffsets earliest and latest), then every record from the beginning (as librdkafka
resolves it: the log start offset) up to the high watermark. Checks nothing itself: the
Rust test owns the assertions.

usage: log_read.py BOOTSTRAP TOPIC

Output: `REC OFFSET KEY VALUE TIMESTAMP` per record in delivery order (`-` for a null key or
value), then `RESULT low=L high=H count=N`.
"""

import sys
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from samsa_common import check, result

bootstrap, topic = sys.argv[1], sys.argv[2]

consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": "log-read",
    "enable.auto.commit": False,
    "enable.partition.eof": True,
})
low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
records = []
if high > low:
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    deadline = time.monotonic() + 30
    done = False
    while not done:
        check(time.monotonic() < deadline,
              f"reading {topic} [{low}, {high}) timed out after {len(records)} records")
        for msg in consumer.consume(num_messages=500, timeout=0.2):
            if msg.error():
                check(msg.error().code() == KafkaError._PARTITION_EOF, f"consume error {msg.error()}")
                done = done or msg.offset() >= high
                continue
            records.append(msg)
            done = done or msg.offset() >= high - 1
consumer.close()


def text(b):
    return "-" if b is None else b.decode()


for msg in records:
    print(f"REC {msg.offset()} {text(msg.key())} {text(msg.value())} {msg.timestamp()[1]}")
result(low=low, high=high, count=len(records))
