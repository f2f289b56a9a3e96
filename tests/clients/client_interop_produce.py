"""confluent-kafka producer for the codec interop tests (others write, Samsa's Rust consumer
reads): N records with one compression codec, explicit CreateTime timestamps, headers
(several names, an empty value, a NULL value), NULL keys, tombstones, binary values and
a few large values, spread over every partition of an existing topic.

usage: client_interop_produce.py BOOTSTRAP TOPIC CODEC N BASE_TS OUT_FILE

OUT_FILE gets one line per acknowledged record, sorted by (partition, offset):
    PARTITION OFFSET TIMESTAMP KEY VALUE HEADERS
in read_partitions.py's encoding: KEY and VALUE are `x` + hex (`x` alone is
zero-length) or `-` for NULL; HEADERS is `-` when there are none, else
`name=VALUE,name=VALUE` with VALUE encoded the same way. The timestamp is the one given
to produce(). Prints `RESULT produced=N partitions=P`.
"""

import sys

from confluent_kafka import Producer

from samsa_common import check, log, result

bootstrap, topic, codec, n, base_ts, out_file = sys.argv[1:7]
n, base_ts = int(n), int(base_ts)


def enc(b):
    return "-" if b is None else "x" + b.hex()


def record(i):
    """(partition hint, key, value, headers, timestamp) of record i; deterministic."""
    key = None if i % 50 == 7 else f"ck-{codec}-{i:05d}".encode()
    if i % 50 == 13:
        value = None  # tombstone
    elif i % 61 == 5:
        value = (f"{codec} big {i};".encode() + bytes(range(256))) * 80  # ~20 KB, compressible
    else:
        # Repetitive so every codec compresses; the tail is not valid UTF-8.
        value = (f"{codec}-value-{i:05d}|".encode() * 6) + bytes([0xFF, 0x00, i % 256])
    headers = [("idx", str(i).encode()), ("dup1", b"first"), ("dup2", b"second"), ("empty", b""), ("null", None)]
    if i % 9 == 0:
        headers = []  # some records carry no headers at all
    return key, value, headers, base_ts + i * 1_001


md = Producer({"bootstrap.servers": bootstrap}).list_topics(topic=topic, timeout=30)
t = md.topics.get(topic)
check(t is not None and t.error is None and t.partitions, f"topic {topic} metadata: {t}")
partitions = sorted(t.partitions)

producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "compression.type": codec,
    "enable.idempotence": False,
    "linger.ms": 20,
    "batch.num.messages": 100,
})
delivered = {}  # (partition, offset) -> line
errors = []


def on_delivery(i):
    def cb(err, msg):
        if err is not None:
            errors.append(f"#{i}: {err}")
            return
        key, value, headers, ts = record(i)
        hdrs = "-" if not headers else ",".join(f"{k}={enc(v)}" for k, v in headers)
        delivered[(msg.partition(), msg.offset())] = f"{msg.partition()} {msg.offset()} {ts} {enc(key)} {enc(value)} {hdrs}"
    return cb


for i in range(n):
    key, value, headers, ts = record(i)
    kwargs = {"key": key, "value": value, "timestamp": ts, "partition": partitions[i % len(partitions)],
              "on_delivery": on_delivery(i)}
    if headers:
        kwargs["headers"] = headers
    while True:
        try:
            producer.produce(topic, **kwargs)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)
left = producer.flush(60)
check(left == 0, f"{left} records not delivered within 60 s")
check(not errors, f"delivery errors: {errors[:5]}")
check(len(delivered) == n, f"{len(delivered)} distinct (partition, offset) acks, want {n}")
with open(out_file, "w") as f:
    for k in sorted(delivered):
        f.write(delivered[k] + "\n")
log(f"produced {n} records with {codec} to {topic}")
result(produced=n, partitions=len(partitions))
