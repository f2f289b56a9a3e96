"""confluent-kafka group consumer for the coordinator kill -9 test.

Consumes TOPIC in GROUP (manual commits of the processed positions every 100 records, and
at the end), logging every event to EVENTS_FILE, one per line:

    C p off          a record was processed
    K p:o,p:o,...    a synchronous commit of these offsets succeeded
    F error          a commit failed (it is retried later)
    A p,p,...        partitions assigned (R: revoked)
    PAUSE / KILLED / RESUME   the handshake with the test

After KILL_AT records (with at least one successful commit and some processed records not
committed yet) it pauses its partitions and creates READY_FILE; the test kills the group
coordinator and creates KILLED_FILE. The consumer keeps polling (paused) until it sees a new
assignment (the group was rebuilt on the new coordinator) or 30 s pass, then goes on until
every record up to END_OFFSETS (`p:o,...`) is processed and committed, and closes cleanly.

Then a fresh consumer joins the same group: it must find the committed offsets equal to
END_OFFSETS and get no record.

Finally the event log is checked:
  - every record was processed at least once;
  - a record processed again was never below the last successful commit of its partition
    at that time (the group resumed from committed offsets, nothing older);
  - after the first assignment that follows the kill, each partition restarts exactly at
    its last successful commit.

usage: cluster_b_group.py BOOTSTRAP TOPIC GROUP END_OFFSETS EVENTS_FILE READY_FILE KILLED_FILE KILL_AT
"""

import os
import sys
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from samsa_common import check, log, result, wait_assignment

bootstrap, topic, group, end_arg, events_path, ready_path, killed_path, kill_at = sys.argv[1:9]
kill_at = int(kill_at)
end = {int(p): int(o) for p, o in (kv.split(":") for kv in end_arg.split(","))}
total = sum(end.values())

events_file = open(events_path, "w", buffering=1)


def ev(line):
    events_file.write(line + "\n")
    events_file.flush()


def fmt_offsets(offsets):
    return ",".join(f"{p}:{o}" for p, o in sorted(offsets.items()))


consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 500,
    "enable.partition.eof": False,
    "partition.assignment.strategy": "range",
})


def on_assign(c, parts):
    ev("A " + ",".join(str(tp.partition) for tp in parts))
    log(f"assigned {[tp.partition for tp in parts]}")


def on_revoke(c, parts):
    global since_commit
    ev("R " + ",".join(str(tp.partition) for tp in parts))
    log(f"revoked {[tp.partition for tp in parts]}")
    # Positions belong to the assignment: the next one starts from the committed offsets,
    # so nothing processed under the old one is committed later.
    position.clear()
    since_commit = 0


consumer.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)

seen = set()
position = {}        # partition -> last processed offset + 1
committed_ok = {}    # what the last successful commits stored
since_commit = 0
commit_failures = 0
phase = "before"     # before -> paused -> after
killed_at = None
mid_commits = 0
paused_committed = {}
assigns_after_kill = 0
deadline = time.monotonic() + 240


def try_commit():
    global since_commit, commit_failures
    offsets = dict(position)
    try:
        res = consumer.commit(
            offsets=[TopicPartition(topic, p, o) for p, o in sorted(offsets.items())],
            asynchronous=False,
        )
        bad = [tp for tp in res if tp.error is not None]
        if bad:
            raise KafkaException(bad[0].error)
    except KafkaException as e:
        commit_failures += 1
        ev(f"F {e}".replace("\n", " "))
        log(f"commit failed: {e}")
        return False
    committed_ok.update(offsets)
    ev("K " + fmt_offsets(offsets))
    since_commit = 0
    return True


while True:
    check(time.monotonic() < deadline,
          f"group consumer timed out: processed {len(seen)}/{total}, committed {committed_ok}")
    for msg in consumer.consume(num_messages=20, timeout=0.2):
        if msg.error():
            log(f"consume error: {msg.error()}")
            continue
        p, off = msg.partition(), msg.offset()
        ev(f"C {p} {off}")
        seen.add((p, off))
        position[p] = off + 1
        since_commit += 1
    if since_commit >= 100:
        try_commit()
    if phase == "before" and len(seen) >= kill_at and committed_ok and since_commit > 0:
        consumer.pause(consumer.assignment())
        ev("PAUSE " + fmt_offsets(position))
        log(f"paused at {position}, committed {committed_ok}")
        # Partitions whose committed offset is inside the partition: where the group must
        # resume exactly, neither from the start nor from the end.
        mid_commits = sum(1 for p, o in committed_ok.items() if 0 < o < end[p])
        paused_committed = dict(committed_ok)
        open(ready_path, "w").close()
        phase = "paused"
    if phase == "paused":
        if killed_at is None and os.path.exists(killed_path):
            killed_at = time.monotonic()
            ev("KILLED")
        if killed_at is not None:
            with open(events_path) as f:
                lines = f.read().splitlines()
            after = lines[lines.index("KILLED") + 1:]
            assigns_after_kill = sum(1 for line in after if line.startswith("A "))
            if assigns_after_kill > 0 or time.monotonic() - killed_at > 30:
                consumer.resume(consumer.assignment())
                ev("RESUME")
                log(f"resuming; assignments since the kill: {assigns_after_kill}")
                phase = "after"
    if phase == "after" and len(seen) >= total and since_commit > 0:
        try_commit()
    if phase == "after" and len(seen) >= total and since_commit == 0 and committed_ok == end:
        break

consumer.close()
ev("CLOSED")
log(f"processed {len(seen)} distinct records, committed {committed_ok}")

# A fresh member of the same group starts from the committed offsets: nothing to read.
fresh = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
    "session.timeout.ms": 10000,
    "heartbeat.interval.ms": 500,
    "enable.partition.eof": False,
})
fresh.subscribe([topic])
wait_assignment(fresh, len(end), timeout=60)
fresh_committed = {tp.partition: tp.offset
                   for tp in fresh.committed([TopicPartition(topic, p) for p in sorted(end)],
                                             timeout=10)}
extra = []
quiet_until = time.monotonic() + 3
while time.monotonic() < quiet_until:
    for msg in fresh.consume(num_messages=100, timeout=0.2):
        if not msg.error():
            extra.append((msg.partition(), msg.offset()))
fresh.close()

# Check the event log.
with open(events_path) as f:
    events = f.read().splitlines()
last_ok = {p: 0 for p in end}
processed = set()
reprocessed = 0
below_commit = []
for line in events:
    kind, _, rest = line.partition(" ")
    if kind == "K":
        for kv in rest.split(","):
            p, o = kv.split(":")
            last_ok[int(p)] = int(o)
    elif kind == "C":
        p, off = (int(x) for x in rest.split())
        if (p, off) in processed:
            reprocessed += 1
            if off < last_ok[p]:
                below_commit.append((p, off, last_ok[p]))
        processed.add((p, off))
never = [(p, o) for p, n in end.items() for o in range(n) if (p, o) not in processed]

# Where each partition restarted after the first assignment that followed the kill.
restart_checked = 0
restart_mismatch = []
kill_idx = events.index("KILLED")
assign_idx = next((i for i in range(kill_idx + 1, len(events)) if events[i].startswith("A ")), None)
if assign_idx is not None:
    at_assign = {p: 0 for p in end}
    for line in events[:assign_idx]:
        if line.startswith("K "):
            for kv in line[2:].split(","):
                p, o = kv.split(":")
                at_assign[int(p)] = int(o)
    first = {}
    for line in events[assign_idx + 1:]:
        if line.startswith("C "):
            p, off = (int(x) for x in line[2:].split())
            first.setdefault(p, off)
    for p, start in first.items():
        restart_checked += 1
        if start != at_assign[p]:
            restart_mismatch.append((p, start, at_assign[p]))
if below_commit:
    log(f"re-processed below the last successful commit: {below_commit[:10]}")
if restart_mismatch:
    log(f"after the kill, partitions restarted away from their last commit "
        f"(partition, first offset, committed): {restart_mismatch}")
if never:
    log(f"{len(never)} records never processed, e.g. {never[:10]}")
result(total=total, processed=len(processed), never=len(never), reprocessed=reprocessed,
       below_commit=len(below_commit), commit_failures=commit_failures,
       assigns_after_kill=assigns_after_kill, restart_checked=restart_checked,
       restart_mismatch=len(restart_mismatch), mid_commits=mid_commits,
       paused_committed=fmt_offsets(paused_committed),
       final_committed=fmt_offsets(committed_ok),
       fresh_committed=fmt_offsets(fresh_committed), fresh_records=len(extra))
