"""confluent-kafka acceptance run against one broker.

Phase 1: N1 keyed records of VALUE_BYTES each, acks=all, partitioner murmur2_random, into a
6-partition topic. Every delivery report must name the partition Java's murmur2 partitioner
picks, and each partition's offsets must be dense. A group of 3 consumers (threads, manual
commits, offsets committed after each batch and on revoke) must receive every record exactly
once, per-partition offsets strictly increasing, and end with committed offsets at the log end.

Phase 2: a second wave of N2 records in two halves. One member closes (LeaveGroup) after it
has processed part of the first half; the second half is produced after it left. Its
partitions must move to the two remaining members, each of which must start every newly
assigned partition exactly at the committed offset: nothing lost, nothing delivered twice.

usage: acceptance.py BOOTSTRAP N1 N2 VALUE_BYTES
"""

import sys
import threading
import time
import traceback

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from samsa_common import check, create_topic, java_partition, log, result, self_test_murmur2

bootstrap = sys.argv[1]
n1, n2, value_bytes = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
TOPIC = "acceptance"
PARTITIONS = 6
GROUP = "acceptance-group"
PHASE_TIMEOUT_S = 120

self_test_murmur2()
create_topic(bootstrap, TOPIC, PARTITIONS)
t0 = time.monotonic()


def key_of(i):
    return f"key-{i}".encode()


def index_of(key):
    return int(key[4:])


def value_of(i):
    head = f"{i:010d}:".encode()
    return (head * (value_bytes // len(head) + 1))[:value_bytes]


delivered = {}  # (partition, offset) -> record index
log_end = {p: 0 for p in range(PARTITIONS)}


def produce(first, count):
    """Produces records first..first+count and checks the delivery reports."""
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "partitioner": "murmur2_random",
        "enable.idempotence": False,
        "linger.ms": 10,
        "queue.buffering.max.messages": 200000,
    })
    reports = []
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(str(err))
        else:
            reports.append((msg.partition(), msg.offset(), index_of(msg.key())))

    for i in range(first, first + count):
        while True:
            try:
                producer.produce(TOPIC, key=key_of(i), value=value_of(i), on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    left = producer.flush(PHASE_TIMEOUT_S)
    check(left == 0, f"{left} records undelivered after {PHASE_TIMEOUT_S} s")
    check(not errors, f"{len(errors)} delivery errors, first: {errors[:3]}")
    check(len(reports) == count, f"{len(reports)} delivery reports, want {count}")
    wrong = [(i, p, java_partition(key_of(i), PARTITIONS)) for p, _, i in reports
             if p != java_partition(key_of(i), PARTITIONS)]
    check(not wrong, f"{len(wrong)} records not in Java's murmur2 partition "
          f"(index, got, want): {wrong[:5]}")
    per_partition = {p: [] for p in range(PARTITIONS)}
    for p, off, i in reports:
        check((p, off) not in delivered, f"offset ({p}, {off}) acknowledged twice")
        delivered[(p, off)] = i
        per_partition[p].append(off)
    for p, offs in per_partition.items():
        offs.sort()
        want = list(range(log_end[p], log_end[p] + len(offs)))
        check(offs == want, f"partition {p}: acked offsets not dense from {log_end[p]}: "
              f"{offs[:3]}..{offs[-3:]}")
        log_end[p] += len(offs)


class State:
    lock = threading.Lock()
    received = {}  # (partition, offset) -> member name


class Member(threading.Thread):
    """One group member: consumes, checks, commits after each batch and on revoke."""

    def __init__(self, name, batch):
        super().__init__(name=name, daemon=True)
        self.batch = batch
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": GROUP,
            "client.id": name,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "range",
        })
        self.assigned = set()
        self.fresh = set()  # assigned partitions whose first record is not yet checked
        self.processed = {}  # partition -> next offset (last processed + 1)
        self.last = {}  # partition -> last offset seen in the current assignment
        self.handovers = []  # (partition, committed offset at assignment, first offset read)
        self.count = 0
        self.wave2 = 0
        self.leave_after_wave2 = None
        self.processed_at_leave = {}
        self.committed_at_leave = {}
        self.stop = threading.Event()
        self.left = threading.Event()
        self.error = None

    def commit(self, partitions=None):
        offsets = [TopicPartition(TOPIC, p, o) for p, o in sorted(self.processed.items())
                   if partitions is None or p in partitions]
        if not offsets:
            return
        for tp in self.consumer.commit(offsets=offsets, asynchronous=False):
            check(tp.error is None, f"{self.name}: commit {tp} failed: {tp.error}")

    def on_assign(self, consumer, partitions):
        self.assigned = {tp.partition for tp in partitions}
        self.fresh = set(self.assigned)
        self.last = {}
        log(f"{time.monotonic() - t0:7.2f}s {self.name} assigned {sorted(self.assigned)}")

    def on_revoke(self, consumer, partitions):
        revoked = {tp.partition for tp in partitions}
        self.commit(revoked)
        for p in revoked:
            self.processed.pop(p, None)
        # Replaced, not mutated: the main thread reads these sets.
        self.assigned = self.assigned - revoked
        self.fresh = self.fresh - revoked
        log(f"{time.monotonic() - t0:7.2f}s {self.name} revoked {sorted(revoked)}")

    def handle(self, msg):
        p, off = msg.partition(), msg.offset()
        check(p in self.assigned, f"{self.name}: record from unassigned partition {p}")
        if p in self.fresh:
            self.fresh.discard(p)
            committed = self.consumer.committed([TopicPartition(TOPIC, p)], timeout=10)[0]
            check(committed.error is None, f"{self.name}: committed({p}): {committed.error}")
            start = committed.offset if committed.offset >= 0 else 0
            self.handovers.append((p, committed.offset, off))
            check(off == start, f"{self.name}: partition {p} starts at offset {off}, "
                  f"committed offset is {committed.offset}")
        check(off > self.last.get(p, -1), f"{self.name}: partition {p} offset {off} "
              f"after {self.last.get(p)}")
        self.last[p] = off
        i = index_of(msg.key())
        check(msg.value() == value_of(i), f"{self.name}: ({p}, {off}) wrong value for key {i}")
        with State.lock:
            other = State.received.get((p, off))
            check(other is None, f"({p}, {off}) delivered to {other} and again to {self.name}")
            State.received[(p, off)] = self.name
        self.processed[p] = off + 1
        self.count += 1
        if i >= n1:
            self.wave2 += 1

    def run(self):
        try:
            self.consumer.subscribe([TOPIC], on_assign=self.on_assign, on_revoke=self.on_revoke)
            while not self.stop.is_set():
                msgs = self.consumer.consume(num_messages=self.batch, timeout=0.1)
                for msg in msgs:
                    if msg.error():
                        check(msg.error().code() == KafkaError._PARTITION_EOF,
                              f"{self.name}: consume error {msg.error()}")
                        continue
                    self.handle(msg)
                if msgs:
                    self.commit()
                if self.leave_after_wave2 is not None and self.wave2 >= self.leave_after_wave2:
                    self.commit()
                    self.processed_at_leave = dict(self.processed)
                    # Read back before leaving: once it leaves, the new owners commit on.
                    # Every partition it owns, also one it got no wave-2 record from.
                    mine = [TopicPartition(TOPIC, p) for p in sorted(set(self.assigned) | set(self.processed))]
                    self.committed_at_leave = {tp.partition: tp.offset for tp in self.consumer.committed(mine, timeout=10)}
                    log(f"{time.monotonic() - t0:7.2f}s {self.name} leaves after {self.wave2} "
                        f"wave-2 records, processed up to {self.processed}")
                    self.consumer.close()
                    self.left.set()
                    return
            self.consumer.close()
        except Exception:
            self.error = traceback.format_exc()
            log(self.error)


def wait_for(what, cond, members, timeout=PHASE_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            check(m.error is None, f"{m.name} failed:\n{m.error}")
        if cond():
            return
        time.sleep(0.05)
    with State.lock:
        got = len(State.received)
    raise AssertionError(f"timed out waiting for {what}; received {got}, assignments "
                         f"{[(m.name, sorted(m.assigned)) for m in members]}")


def received_count():
    with State.lock:
        return len(State.received)


# ---- phase 1 -----------------------------------------------------------------------------
produce(0, n1)
log(f"{time.monotonic() - t0:7.2f}s phase 1: produced {n1} records, log ends {log_end}")

members = [Member("m0", 500), Member("m1", 500), Member("m2", 100)]
for m in members:
    m.start()


def balanced(ms, per_member):
    owned = [m.assigned for m in ms]
    union = set().union(*owned)
    return union == set(range(PARTITIONS)) and all(len(o) == per_member for o in owned)


wait_for(f"all {n1} records consumed by a balanced group",
         lambda: received_count() == n1 and balanced(members, PARTITIONS // 3), members)
with State.lock:
    check(set(State.received) == set(delivered), "consumed records differ from acknowledged ones")

checker = Consumer({"bootstrap.servers": bootstrap, "group.id": GROUP, "enable.auto.commit": False})


def committed_offsets():
    tps = checker.committed([TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)
    return {tp.partition: tp.offset for tp in tps}


wait_for("committed offsets at the log end after phase 1",
         lambda: committed_offsets() == log_end, members, timeout=30)
phase1_counts = {m.name: m.count for m in members}
log(f"{time.monotonic() - t0:7.2f}s phase 1 consumed: {phase1_counts}")

# ---- phase 2 -----------------------------------------------------------------------------
leaver, stayers = members[2], members[:2]
leaver_partitions = set(leaver.assigned)
leaver.leave_after_wave2 = 200
half = n2 // 2
produce(n1, half)
wait_for(f"{leaver.name} to leave", leaver.left.is_set, members)
leaver.join(30)
check(leaver.error is None, f"{leaver.name} failed:\n{leaver.error}")
committed_at_leave = leaver.committed_at_leave
left_at = {p: committed_at_leave[p] for p in leaver_partitions}
for p, off in leaver.processed_at_leave.items():
    check(committed_at_leave[p] == off, f"partition {p}: committed {committed_at_leave[p]} after "
          f"the leaver processed up to {off}")
check(any(left_at[p] < log_end[p] for p in leaver_partitions),
      f"leaver consumed all of its partitions before leaving ({left_at} vs {log_end})")
produce(n1 + half, n2 - half)
log(f"{time.monotonic() - t0:7.2f}s phase 2: produced {n2} records, log ends {log_end}")

wait_for(f"all {n1 + n2} records consumed by the 2 remaining members",
         lambda: received_count() == n1 + n2 and balanced(stayers, PARTITIONS // 2), stayers)
wait_for("committed offsets at the log end after phase 2",
         lambda: committed_offsets() == log_end, stayers, timeout=30)
for m in stayers:
    m.stop.set()
for m in stayers:
    m.join(30)
    check(m.error is None, f"{m.name} failed:\n{m.error}")
checker.close()

with State.lock:
    received = dict(State.received)
check(set(received) == set(delivered), "consumed records differ from acknowledged ones")
for p in leaver_partitions:
    after = [owner for (q, off), owner in received.items() if q == p and off >= left_at[p]]
    check(after and all(o != leaver.name for o in after),
          f"partition {p} from offset {left_at[p]}: owners {set(after)}")
    took_over = [(m.name, h) for m in stayers for h in m.handovers
                 if h[0] == p and h[1] == left_at[p]]
    check(took_over, f"no remaining member resumed partition {p} at committed {left_at[p]}: "
          f"{[(m.name, m.handovers) for m in stayers]}")

result(produced=len(delivered), consumed=len(received), murmur2_mismatches=0,
       moved=len(leaver_partitions), leaver_left_at=",".join(f"{p}:{o}" for p, o in sorted(left_at.items())),
       seconds=f"{time.monotonic() - t0:.1f}")
