"""confluent-kafka helper for the `samsa group` CLI tests. Three modes:

  cli_group.py produce BOOTSTRAP TOPIC P:COUNT,...
      writes COUNT records to each partition P (explicit partition), flushes, and prints
      `RESULT produced=N`.
  cli_group.py commit BOOTSTRAP TOPIC GROUP P:OFFSET,...
      joins GROUP subscribed to TOPIC, waits until it owns every partition named, commits
      exactly the given offsets (synchronously), checks them with `committed`, leaves the
      group and prints `RESULT committed=P:O,...`.
  cli_group.py committed BOOTSTRAP TOPIC GROUP PARTITIONS
      reads GROUP's committed offsets of partitions 0..PARTITIONS-1 without joining and
      prints `RESULT committed=P:O,...` (-1001: none).
  cli_group.py member BOOTSTRAP TOPIC GROUP PARTITIONS STOP_FILE
      joins GROUP, waits until it owns PARTITIONS partitions, prints `READY` on stdout and
      stays in the group (polling) until STOP_FILE exists, then leaves the group cleanly.
"""

import os
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from samsa_common import DEADLINE_S, check, log, result, wait_assignment


def pairs(spec):
    return {int(p): int(v) for p, v in (item.split(":") for item in spec.split(","))}


def consumer(bootstrap, group, client_id):
    return Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": client_id,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })


def produce(bootstrap, topic, spec):
    counts = pairs(spec)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    errors = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(err)

    for p, n in counts.items():
        for i in range(n):
            producer.produce(topic, value=f"p{p}-{i}".encode(), partition=p, on_delivery=delivered)
    check(producer.flush(DEADLINE_S) == 0, "records still unsent after flush")
    check(not errors, f"delivery errors: {errors}")
    result(produced=sum(counts.values()))


def commit(bootstrap, topic, group, spec):
    offsets = pairs(spec)
    c = consumer(bootstrap, group, "cli-commit")
    c.subscribe([topic])
    wait_assignment(c, len(offsets))
    tps = [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
    for tp in c.commit(offsets=tps, asynchronous=False):
        check(tp.error is None, f"commit {tp}: {tp.error}")
    got = c.committed([TopicPartition(topic, p) for p in sorted(offsets)], timeout=10)
    check({tp.partition: tp.offset for tp in got} == offsets, f"committed {got}, want {offsets}")
    c.close()
    result(committed=",".join(f"{p}:{o}" for p, o in sorted(offsets.items())))


def committed(bootstrap, topic, group, partitions):
    c = consumer(bootstrap, group, "cli-committed")
    got = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    c.close()
    result(committed=",".join(f"{tp.partition}:{tp.offset}" for tp in sorted(got, key=lambda tp: tp.partition)))


def member(bootstrap, topic, group, partitions, stop_file):
    c = consumer(bootstrap, group, "cli-member")
    c.subscribe([topic])
    wait_assignment(c, partitions)
    print("READY", flush=True)
    deadline = time.monotonic() + 3 * DEADLINE_S
    while not os.path.exists(stop_file):
        check(time.monotonic() < deadline, f"{stop_file} did not appear")
        c.poll(0.1)
    c.close()
    log("member left")


mode = sys.argv[1]
if mode == "produce":
    produce(*sys.argv[2:5])
elif mode == "commit":
    commit(*sys.argv[2:6])
elif mode == "committed":
    committed(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
elif mode == "member":
    member(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]), sys.argv[6])
else:
    raise SystemExit(f"unknown mode {mode}")
