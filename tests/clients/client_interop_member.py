"""One consumer-group member for the group interop test (Samsa's Rust consumer, kafka-python
and confluent-kafka in one group): subscribes to TOPIC in GROUP with the client's default
assignors, and loops poll -> process -> synchronous commit of exactly what the batch
consumed -> report, until STOP_FILE exists; then closes cleanly (LeaveGroup).

usage: client_interop_member.py CLIENT BOOTSTRAP TOPIC GROUP OUT_FILE STOP_FILE
    CLIENT is `kafka-python` or `confluent`; client.id is `interop-CLIENT`.

OUT_FILE gets lines (each written only when complete, so a reader may ignore a trailing
partial line):
    ASSIGNED p,p,...      the member's assignment after a poll, when it changed (`-`: none)
    CONSUMED p offset v   one per record, written only after the commit that covers it
                          succeeded: a record is reported at most once per successful commit
    COMMIT_FAILED error   a commit failed: the batch is not reported, and its partitions
                          still owned are rewound to the batch's first offsets, so the
                          records come again (here or, after a rebalance, to the new owner)
    CLOSED                after close() returned
Prints `RESULT client=... consumed=N commit_failures=F` on stdout.
"""

import os
import sys
import time

from samsa_common import check, log, result

client, bootstrap, topic, group, out_file, stop_file = sys.argv[1:7]
DEADLINE_S = 170.0  # the Rust test's own waits are shorter; this only stops a stray process

out = open(out_file, "a", buffering=1)


def emit(lines):
    if lines:
        out.write("".join(line + "\n" for line in lines))
        out.flush()


def fmt_assignment(parts):
    return "ASSIGNED " + (",".join(str(p) for p in sorted(parts)) if parts else "-")


class KafkaPythonMember:
    def __init__(self):
        from kafka import KafkaConsumer

        self.c = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=f"interop-{client}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            # Generous: kafka-python's heartbeat thread needs the GIL, and under a full
            # test run's CPU load it can miss a 10 s session (it leaves cleanly anyway).
            session_timeout_ms=30000,
            heartbeat_interval_ms=500,
            max_poll_records=100,
        )

    def assignment(self):
        return {tp.partition for tp in self.c.assignment() if tp.topic == topic}

    def poll(self):
        """[(partition, offset, value bytes)] of one poll."""
        batch = self.c.poll(timeout_ms=200)
        return [(r.partition, r.offset, r.value) for recs in batch.values() for r in recs]

    def commit(self, next_offsets):
        from kafka import TopicPartition
        from kafka.errors import KafkaError
        from kafka.structs import OffsetAndMetadata

        offsets = {TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in next_offsets.items()}
        try:
            self.c.commit(offsets)
            return None
        except KafkaError as e:
            return repr(e)

    def rewind(self, first_offsets):
        from kafka import TopicPartition

        owned = self.assignment()
        for p, o in first_offsets.items():
            if p in owned:
                self.c.seek(TopicPartition(topic, p), o)

    def close(self):
        self.c.close(autocommit=False)


class ConfluentMember:
    def __init__(self):
        from confluent_kafka import Consumer

        self.c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": f"interop-{client}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
        })
        self.c.subscribe([topic])

    def assignment(self):
        return {tp.partition for tp in self.c.assignment() if tp.topic == topic}

    def poll(self):
        from confluent_kafka import KafkaError

        batch = []
        for m in self.c.consume(num_messages=100, timeout=0.2):
            if m.error():
                check(m.error().code() == KafkaError._PARTITION_EOF, f"consume error: {m.error()}")
                continue
            batch.append((m.partition(), m.offset(), m.value()))
        return batch

    def commit(self, next_offsets):
        from confluent_kafka import KafkaException, TopicPartition

        try:
            res = self.c.commit(offsets=[TopicPartition(topic, p, o) for p, o in next_offsets.items()], asynchronous=False)
        except KafkaException as e:
            return repr(e)
        bad = [f"{tp.partition}:{tp.error}" for tp in res or [] if tp.error is not None]
        return ";".join(bad) if bad else None

    def rewind(self, first_offsets):
        from confluent_kafka import KafkaException, TopicPartition

        owned = self.assignment()
        for p, o in first_offsets.items():
            if p in owned:
                try:
                    self.c.seek(TopicPartition(topic, p, o))
                except KafkaException as e:
                    log(f"seek {p}@{o} failed: {e}")

    def close(self):
        self.c.close()


check(client in ("kafka-python", "confluent"), f"unknown client {client}")
member = KafkaPythonMember() if client == "kafka-python" else ConfluentMember()
deadline = time.monotonic() + DEADLINE_S
last_assignment = None
consumed = 0
commit_failures = 0
while not os.path.exists(stop_file):
    check(time.monotonic() < deadline, f"{client}: still running after {DEADLINE_S} s")
    batch = member.poll()
    now = member.assignment()
    if now != last_assignment:
        emit([fmt_assignment(now)])
        last_assignment = now
    if not batch:
        continue
    first, nxt = {}, {}
    for p, o, _ in batch:
        first[p] = min(first.get(p, o), o)
        nxt[p] = max(nxt.get(p, 0), o + 1)
    err = member.commit(nxt)
    if err is not None:
        commit_failures += 1
        log(f"{client}: commit of {nxt} failed: {err}")
        emit([f"COMMIT_FAILED {err}".replace("\n", " ")])
        member.rewind(first)
        continue
    emit([f"CONSUMED {p} {o} {v.decode()}" for p, o, v in batch])
    consumed += len(batch)

member.close()
emit(["CLOSED"])
out.close()
result(client=client, consumed=consumed, commit_failures=commit_failures)
