"""confluent-kafka: read a compacted partition from the beginning again and again while a
producer keeps updating KEYS keys and the cleaner rewrites closed segments underneath.

Each pass is a fresh consumer assigned at the beginning of partition 0 that reads up to the
high watermark it saw when it started, in small fetches (so the cleaner runs between them).
Every pass must see strictly increasing offsets, for each key strictly increasing sequence
numbers (compaction never brings back an older value), and every record at the offset its
delivery report gave (compaction never renumbers). The final pass, after the producer
stopped, must end with the last value of every key.

usage: log_compaction_passes.py BOOTSTRAP TOPIC KEYS RECORDS

Output: `RESULT produced=N passes=P passes_during_produce=D passes_with_gaps=G
final_records=R final_keys=K`.
"""

import sys
import threading
import time

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition

from samsa_common import check, create_topic, log, result

bootstrap, topic = sys.argv[1], sys.argv[2]
n_keys, n_records = int(sys.argv[3]), int(sys.argv[4])
create_topic(bootstrap, topic, 1, {
    "cleanup.policy": "compact",
    "segment.bytes": "1024",
    "min.cleanable.dirty.ratio": "0.01",
})

PAD = "p" * 40


def key_of(seq):
    return f"key-{seq % n_keys:03d}"


def value_of(seq):
    return f"{seq}:{key_of(seq)}:{PAD}"


delivered = {}  # seq -> offset
producer_errors = []


def run_producer():
    try:
        producer = Producer({
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": False,
            "linger.ms": 5000,
        })

        def on_delivery(err, msg):
            if err is not None:
                producer_errors.append(str(err))
            else:
                delivered[int(msg.value().decode().split(":")[0])] = msg.offset()

        for seq in range(n_records):
            producer.produce(topic, key=key_of(seq).encode(), value=value_of(seq).encode(),
                             partition=0, on_delivery=on_delivery)
            if seq % 5 == 4:  # small batches: many closed segments for the cleaner
                check(producer.flush(30) == 0, "records not delivered within 30 s")
        check(producer.flush(30) == 0, "records not delivered within 30 s")
    except Exception as e:  # reported by the main thread
        producer_errors.append(repr(e))


def one_pass(name):
    """Reads [beginning, high watermark at start); returns [(offset, seq)] after checking
    the order invariants."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"passes-{name}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "max.partition.fetch.bytes": 1024,
        "fetch.max.bytes": 1024,
        "message.max.bytes": 1000,
    })
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    seen = []
    last_seq = {}
    if high > low:
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        deadline = time.monotonic() + 30
        done = False
        while not done:
            check(time.monotonic() < deadline, f"pass {name}: reading [{low}, {high}) timed out")
            for msg in consumer.consume(num_messages=100, timeout=0.2):
                if msg.error():
                    check(msg.error().code() == KafkaError._PARTITION_EOF,
                          f"pass {name}: consume error {msg.error()}")
                    done = done or msg.offset() >= high
                    continue
                off = msg.offset()
                key = msg.key().decode()
                value = msg.value().decode()
                seq = int(value.split(":")[0])
                check(key == key_of(seq) and value == value_of(seq),
                      f"pass {name}: offset {off} has key {key!r} value {value!r}")
                check(not seen or off > seen[-1][0],
                      f"pass {name}: offset {off} after {seen[-1][0] if seen else None}")
                check(seq > last_seq.get(key, -1),
                      f"pass {name}: {key} seq {seq} at offset {off} after seq {last_seq.get(key)}")
                last_seq[key] = seq
                seen.append((off, seq))
                done = done or off >= high - 1
    consumer.close()
    return low, high, seen


started = time.monotonic()
producer_thread = threading.Thread(target=run_producer)
producer_thread.start()
passes = []
during = 0
while producer_thread.is_alive() or len(passes) < 4:
    alive = producer_thread.is_alive()
    passes.append(one_pass(len(passes)))
    during += alive
    low, high, seen = passes[-1]
    log(f"pass {len(passes)}: [{low}, {high}) {len(seen)} records, producer alive {alive}, "
        f"{len(delivered)} acknowledged, {time.monotonic() - started:.1f} s")
producer_thread.join()
check(not producer_errors, f"producer errors: {producer_errors[:5]}")
check(len(delivered) == n_records, f"{len(delivered)} of {n_records} records acknowledged")

final = one_pass("final")
passes.append(final)

gaps = 0
for low, high, seen in passes:
    for off, seq in seen:
        check(delivered[seq] == off, f"seq {seq} read at offset {off}, acknowledged at {delivered[seq]}")
    offsets = [low - 1] + [off for off, _ in seen]
    gaps += any(b - a > 1 for a, b in zip(offsets, offsets[1:]))

_, final_high, final_seen = final
check(final_high == n_records, f"final high watermark {final_high}, want {n_records}")
last_value = {}
for _, seq in final_seen:
    last_value[key_of(seq)] = seq
want = {key_of(seq): seq for seq in range(n_records)}
check(last_value == want, f"final pass ends with {last_value}, want {want}")
result(produced=n_records, passes=len(passes), passes_during_produce=during,
       passes_with_gaps=gaps, final_records=len(final_seen), final_keys=len(last_value))
