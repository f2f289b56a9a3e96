"""confluent-kafka side of the murmur2 parity test for Samsa's Rust producer: produce one
record per key with `partitioner=murmur2_random` and report the partition librdkafka chose
for each key (from the delivery reports).

usage: client_producer_murmur2.py BOOTSTRAP TOPIC PARTITIONS KEYS_FILE OUT_FILE

KEYS_FILE has one hex-encoded key per line (an empty line is a zero-length key, which is
not a NULL key). OUT_FILE gets one `INDEX PARTITION` line per key, in key order.
Prints `RESULT produced=N java_mismatches=M` where M counts keys whose librdkafka
partition differs from the Java formula in samsa_common.java_partition.
"""

import sys

from confluent_kafka import Producer

from samsa_common import check, create_topic, java_partition, log, result, self_test_murmur2

bootstrap, topic, partitions, keys_file, out_file = sys.argv[1:6]
partitions = int(partitions)
self_test_murmur2()

with open(keys_file) as f:
    keys = [bytes.fromhex(line.strip()) for line in f.read().split("\n")[:-1]]
log(f"{len(keys)} keys, {sum(1 for k in keys if not k)} of them empty")
create_topic(bootstrap, topic, partitions)

producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": False,
    "partitioner": "murmur2_random",
    "linger.ms": 5,
})
chosen = {}
errors = []


def on_delivery(err, msg):
    if err is not None:
        errors.append(str(err))
        return
    index = int(msg.value().decode())
    check(msg.key() == keys[index], f"delivery report for #{index} carries key {msg.key()!r}, want {keys[index]!r}")
    chosen[index] = msg.partition()


for i, key in enumerate(keys):
    while True:
        try:
            # key is bytes (possibly b""), never None: every record is keyed.
            producer.produce(topic, key=key, value=str(i).encode(), on_delivery=on_delivery)
            break
        except BufferError:
            producer.poll(0.05)
    producer.poll(0)
left = producer.flush(60)
check(left == 0, f"{left} records not delivered within 60 s")
check(not errors, f"delivery errors: {errors[:5]}")
check(len(chosen) == len(keys), f"{len(chosen)} delivery reports, want {len(keys)}")

java_mismatches = 0
with open(out_file, "w") as f:
    for i, key in enumerate(keys):
        if chosen[i] != java_partition(key, partitions):
            java_mismatches += 1
        f.write(f"{i} {chosen[i]}\n")
result(produced=len(chosen), java_mismatches=java_mismatches)
