"""confluent-kafka producer driven by a small script on stdin, for the log policy tests
(retention, compaction, torn-tail recovery). Everything goes to partition 0 with acks=all.

usage: log_produce.py BOOTSTRAP TOPIC < SCRIPT

Script lines:
  create [NAME=VALUE ...]   create TOPIC (1 partition) with these topic configs
  rec KEY VALUE [TS]        produce one record; KEY or VALUE `-` means null (a null value is
                            a tombstone); TS is an explicit CreateTime in ms
  flush                     send what is buffered and wait for its acks: linger.ms is long,
                            so the records between two flushes form one record batch

Output: `ACK INDEX OFFSET` for each record in script order, then
`RESULT produced=N first=OFFSET last=OFFSET`.
"""

import sys

from confluent_kafka import Producer

from samsa_common import check, create_topic, log, result

bootstrap, topic = sys.argv[1], sys.argv[2]

producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": False,
    # Batches are cut by the script's `flush` lines only.
    "linger.ms": 5000,
    "batch.num.messages": 10000,
    "message.timeout.ms": 30000,
})
offsets = {}
errors = []


def delivery(index):
    def on_delivery(err, msg):
        if err is not None:
            errors.append(f"record {index}: {err}")
        else:
            check(msg.partition() == 0, f"record {index} went to partition {msg.partition()}")
            offsets[index] = msg.offset()
    return on_delivery


def flush():
    left = producer.flush(30)
    check(left == 0, f"{left} records not delivered within 30 s")
    check(not errors, f"delivery errors: {errors[:5]}")


def field(text):
    return None if text == "-" else text.encode()


count = 0
for n, line in enumerate(sys.stdin, 1):
    words = line.split()
    if not words:
        continue
    if words[0] == "create":
        config = dict(w.split("=", 1) for w in words[1:])
        create_topic(bootstrap, topic, 1, config)
        # Let the producer learn the leader first: records produced while it is unknown
        # wait in librdkafka's unassigned queue and may leave it one batch per record.
        md = producer.list_topics(topic, timeout=10)
        check(md.topics[topic].error is None and md.topics[topic].partitions[0].leader >= 0,
              f"no leader for {topic}: {md.topics[topic]}")
        log(f"created {topic} with {config}")
    elif words[0] == "rec":
        check(len(words) in (3, 4), f"line {n}: want `rec KEY VALUE [TS]`, got {line!r}")
        ts = int(words[3]) if len(words) == 4 else 0
        producer.produce(topic, key=field(words[1]), value=field(words[2]), partition=0,
                         timestamp=ts, on_delivery=delivery(count))
        count += 1
        producer.poll(0)
    elif words[0] == "flush":
        flush()
    else:
        raise AssertionError(f"line {n}: unknown command {line!r}")
flush()
check(len(offsets) == count, f"{len(offsets)} acks for {count} records")
for i in range(count):
    print(f"ACK {i} {offsets[i]}")
log(f"produced {count} records to {topic}")
result(produced=count, first=offsets.get(0, -1), last=offsets.get(count - 1, -1))
