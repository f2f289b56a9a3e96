"""confluent-kafka: ListOffsets by timestamp, earliest and latest.
Produces 10 records with timestamps 1_700_000_000_000 + 10*i in separate batches, then asks
for the first offset at or after several timestamps.

usage: offsets_for_times.py BOOTSTRAP
"""
import sys

from confluent_kafka import Consumer, Producer, TopicPartition

from samsa_common import check, create_topic, result

bootstrap = sys.argv[1]
topic = "by-time"
create_topic(bootstrap, topic, 1)
base = 1_700_000_000_000
p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "linger.ms": 0})
for i in range(10):
    p.produce(topic, value=f"v{i}", timestamp=base + 10 * i)
    p.flush(10)  # one batch per record, so the lookup must pick the right batch
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "times"})
asked = {base: 0, base + 10: 1, base + 45: 5, base + 90: 9, base + 91: -1}
for ts, want in asked.items():
    # One timestamp per call: librdkafka keeps only one lookup per partition per request.
    [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=10)
    check(tp.error is None, f"{ts}: {tp.error}")
    check(tp.offset == want, f"timestamp {ts}: offset {tp.offset}, want {want}")
low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
check((low, high) == (0, 10), f"watermarks {(low, high)}")
c.close()
result(checked=len(asked))
