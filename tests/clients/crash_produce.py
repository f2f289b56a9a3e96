"""confluent-kafka producer for the crash test: creates TOPIC (3 partitions), then produces
with acks=all until STOP_FILE exists, appending each acknowledged record to ACKED_FILE as
`partition offset value` the moment its delivery report arrives. Records that fail (the
broker was killed) are only counted. Then flushes and exits 0.

usage: crash_produce.py BOOTSTRAP TOPIC ACKED_FILE STOP_FILE
"""

import os
import sys

from confluent_kafka import Producer

from samsa_common import create_topic, log, result

bootstrap, topic, acked_path, stop_path = sys.argv[1:5]
create_topic(bootstrap, topic, 3)

producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": False,
    "linger.ms": 5,
    "message.timeout.ms": 5000,
})
acked_file = open(acked_path, "a", buffering=1)
counts = {"acked": 0, "failed": 0}
first_error = []


def on_delivery(err, msg):
    if err is not None:
        counts["failed"] += 1
        if not first_error:
            first_error.append(str(err))
        return
    # Written and flushed per record: the test reads this file while we run.
    acked_file.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")
    acked_file.flush()
    counts["acked"] += 1


i = 0
while not os.path.exists(stop_path):
    if len(producer) >= 1000:
        producer.poll(0.01)
        continue
    producer.produce(topic, key=f"k{i}".encode(), value=f"crash-{i:08d}".encode(),
                     on_delivery=on_delivery)
    i += 1
    producer.poll(0.001 if i % 20 == 0 else 0)
left = producer.flush(30)
acked_file.close()
log(f"produced {i}, acked {counts['acked']}, failed {counts['failed']} {first_error}, left {left}")
result(produced=i, acked=counts["acked"], failed=counts["failed"], unfinished=left)
