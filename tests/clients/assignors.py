"""confluent-kafka: two group members with one client-side assignor (range, roundrobin or
cooperative-sticky, the last with incremental rebalancing). Member A starts alone, B joins
mid-stream; offsets are committed synchronously after every record. A commit may fail with
REBALANCE_IN_PROGRESS while the group completes a rebalance (Kafka answers the same); only
a record whose own commit failed may be delivered again. Every record must be consumed,
and in the end both members hold partitions.

usage: assignors.py BOOTSTRAP STRATEGY N
"""

import sys
import threading
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer

from samsa_common import check, create_topic, result

bootstrap, strategy, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
topic = f"assign-{strategy}"
group = f"group-{strategy}"
create_topic(bootstrap, topic, 4)

p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False, "linger.ms": 5})
for i in range(n):
    p.produce(topic, key=f"k{i}", value=str(i))
check(p.flush(30) == 0, "undelivered records")

seen = {}  # value -> member
uncommitted = set()  # values whose commit failed: the only ones that may come again
commit_errors = []
lock = threading.Lock()
stop = threading.Event()
assigned = {}


def member(name, started):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "partition.assignment.strategy": strategy,
                  "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})

    c.subscribe([topic])
    started.set()
    while not stop.is_set():
        m = c.poll(0.2)
        assigned[name] = {(tp.topic, tp.partition) for tp in c.assignment()}
        if m is None or (m.error() and m.error().code() == KafkaError._PARTITION_EOF):
            continue
        check(m.error() is None, f"{name}: {m.error()}")
        with lock:
            again = m.value() in seen
            check(not again or m.value() in uncommitted,
                  f"record {m.value()} consumed by {seen.get(m.value())} and again by {name} after its commit succeeded")
            seen[m.value()] = name
        try:
            c.commit(message=m, asynchronous=False)
            uncommitted.discard(m.value())
        except KafkaException as e:
            code = e.args[0].code()
            check(code in (KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID),
                  f"{name}: unexpected commit error {e}")
            commit_errors.append(code)
            uncommitted.add(m.value())
        assigned[name] = {(tp.topic, tp.partition) for tp in c.assignment()}
        if name == "A" and len(seen) == n // 4:
            time.sleep(0.5)  # slow down so that B joins while A is mid-stream
    c.close()


a_started, b_started = threading.Event(), threading.Event()
a = threading.Thread(target=member, args=("A", a_started))
a.start()
deadline = time.time() + 60
while len(seen) < n // 4 and time.time() < deadline:
    time.sleep(0.05)
b = threading.Thread(target=member, args=("B", b_started))
b.start()
while len(seen) < n and time.time() < deadline:
    time.sleep(0.05)
# Let the group settle so both members own partitions, then stop.
settle = time.time() + 20
def settled():
    a_parts, b_parts = set(assigned.get("A", ())), set(assigned.get("B", ()))
    return a_parts and b_parts and not (a_parts & b_parts) and len(a_parts | b_parts) == 4


while time.time() < settle and not settled():
    time.sleep(0.1)
# The settled split, taken before either member closes (a close rebalances again).
final = {m: len(assigned.get(m, ())) for m in ("A", "B")}
stop.set()
a.join(30)
b.join(30)
check(len(seen) == n, f"consumed {len(seen)} of {n}")
by_member = {m: sum(1 for v in seen.values() if v == m) for m in ("A", "B")}
result(strategy=strategy, commit_errors=len(commit_errors), consumed=len(seen), a_records=by_member["A"], b_records=by_member["B"],
       a_partitions=final["A"], b_partitions=final["B"])
