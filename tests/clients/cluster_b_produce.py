"""Idempotent confluent-kafka producer for the cluster failover test: writes unique values
(`v000000001`, ...) round-robin to the partitions of TOPIC with acks=all until STOP_FILE
exists, appending each acknowledged record to ACKED_FILE as `partition offset value` the
moment its delivery report arrives. Then flushes and exits 0.

The topic must exist. Records are paced (at most ~1000/s) so the brokers of a 3-node
cluster on a small machine keep up. A record that fails for good, or a fatal producer
error, is counted and reported: with idempotence and a long message.timeout.ms, none is
expected.

usage: cluster_b_produce.py BOOTSTRAP TOPIC PARTITIONS ACKED_FILE STOP_FILE
"""

import os
import sys
import time

from confluent_kafka import Producer

from samsa_common import log, result

bootstrap, topic, partitions, acked_path, stop_path = sys.argv[1:6]
partitions = int(partitions)

counts = {"acked": 0, "failed": 0}
failures = []
fatal = []
client_errors = []


def on_error(err):
    # Transport errors while a broker is frozen are expected; fatal ones are not.
    client_errors.append(str(err))
    log(f"producer error callback: {err} (fatal={err.fatal()})")
    if err.fatal():
        fatal.append(str(err))


producer = Producer({
    "bootstrap.servers": bootstrap,
    "enable.idempotence": True,
    "acks": "all",
    "max.in.flight.requests.per.connection": 5,
    "linger.ms": 5,
    # Long enough that no record expires while leadership moves (a frozen leader is
    # fenced after broker.session.timeout.ms = 3 s).
    "message.timeout.ms": 120000,
    "request.timeout.ms": 10000,
    "retry.backoff.ms": 100,
    "topic.metadata.refresh.interval.ms": 2000,
    "error_cb": on_error,
})
acked_file = open(acked_path, "a", buffering=1)


def on_delivery(err, msg):
    if err is not None:
        counts["failed"] += 1
        if len(failures) < 10:
            failures.append(f"{msg.partition()}:{msg.value().decode()}:{err}")
        return
    # Written and flushed per record: the test reads this file while we run.
    acked_file.write(f"{msg.partition()} {msg.offset()} {msg.value().decode()}\n")
    acked_file.flush()
    counts["acked"] += 1


i = 0
while not os.path.exists(stop_path) and not fatal:
    if len(producer) >= 500:
        producer.poll(0.01)
        continue
    producer.produce(topic, value=f"v{i:09d}".encode(), partition=i % partitions,
                     on_delivery=on_delivery)
    i += 1
    producer.poll(0)
    if i % 10 == 0:
        time.sleep(0.01)
left = producer.flush(90)
acked_file.close()
log(f"produced {i}, acked {counts['acked']}, failed {counts['failed']} {failures}, "
    f"left {left}, fatal {fatal}, client errors {len(client_errors)}")
result(produced=i, acked=counts["acked"], failed=counts["failed"], unfinished=left,
       fatal=len(fatal), client_errors=len(client_errors))
