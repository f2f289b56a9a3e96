"""Zombie fencing with confluent-kafka, in two rounds over the 3 partitions of a new TOPIC,
all producers sharing one transactional.id.

Round 1: producer A begins a transaction and writes `a-*` records (flushed, so they are in
the log); producer B calls init_transactions, which fences A and aborts A's open
transaction; B commits `b-*` records. A then produces again and commits: both must fail
with a fatal fencing error (the Produce path).

Round 2: B begins a second transaction with `b2-*` records (flushed); producer C calls
init_transactions and commits `c-*` records; B then commits without producing anything
new: the commit must fail with a fatal fencing error (the EndTxn path).

A read_committed reader must see exactly B's first and C's records in order (none of A's
or of B's second transaction), a read_uncommitted reader every record.

usage: txn_fence.py BOOTSTRAP TOPIC
"""

import sys

from confluent_kafka import KafkaException, Producer

from samsa_common import check, create_topic, log, result
from txn_common import describe, is_fencing_error, kafka_error, read_to_end, values

bootstrap, topic = sys.argv[1:3]
PARTITIONS, PER_PARTITION = 3, 5
create_topic(bootstrap, topic, PARTITIONS)


def producer(name):
    # No delivery or error callbacks: confluent-kafka raises a fatal error from the poll
    # (or flush) that serves callbacks, and a Python callback run after that fails.
    p = Producer({
        "bootstrap.servers": bootstrap,
        "transactional.id": f"{topic}-shared-id",
        "client.id": name,
        "linger.ms": 1,
    })
    p.init_transactions(30)
    return p


def write(p, prefix):
    for part in range(PARTITIONS):
        for i in range(PER_PARTITION):
            p.produce(topic, partition=part, value=f"{prefix}-p{part}-{i}".encode())


def records(prefix):
    return {part: [f"{prefix}-p{part}-{i}" for i in range(PER_PARTITION)] for part in range(PARTITIONS)}


def open_flushed_txn(p, prefix):
    p.begin_transaction()
    write(p, prefix)
    check(p.flush(30) == 0, f"{prefix}: records not delivered before fencing")


def commit_txn(p, prefix):
    p.begin_transaction()
    write(p, prefix)
    p.commit_transaction(30)


def fenced_error(what, call):
    """Runs `call`, which must fail with a fatal fencing error; returns that error."""
    try:
        call()
    except KafkaException as e:
        err = kafka_error(e)
        log(f"{what} failed: {err}")
        check(is_fencing_error(err) and err.fatal(),
              f"{what} failed with {err} (fatal={err.fatal()}), want a fatal fencing error")
        return err
    raise AssertionError(f"{what} succeeded on a fenced producer")


# Round 1: fenced on Produce.
a = producer("zombie-a")
open_flushed_txn(a, "a")
b = producer("b")
commit_txn(b, "b")
for part in range(PARTITIONS):
    a.produce(topic, partition=part, value=f"a-late-p{part}".encode())
try:
    a.flush(10)
except KafkaException as e:
    check(is_fencing_error(kafka_error(e)), f"A's flush failed with {kafka_error(e)}")
produce_fenced = fenced_error("A's commit after producing", lambda: a.commit_transaction(30))

# Round 2: fenced on EndTxn.
open_flushed_txn(b, "b2")
c = producer("c")
commit_txn(c, "c")
commit_fenced = fenced_error("B's commit without producing", lambda: b.commit_transaction(30))

want = {part: records("b")[part] + records("c")[part] for part in range(PARTITIONS)}
rc = values(read_to_end(bootstrap, topic, PARTITIONS, "read_committed"))
check(rc == want, f"read_committed saw {rc}, want only the committed {want}")
ru = values(read_to_end(bootstrap, topic, PARTITIONS, "read_uncommitted"))
want_all = {part: records("a")[part] + records("b")[part] + records("b2")[part] + records("c")[part]
            for part in range(PARTITIONS)}
check(ru == want_all, f"read_uncommitted saw {ru}, want {want_all}")

result(produce_fenced=describe(produce_fenced), commit_fenced=describe(commit_fenced),
       committed=sum(len(v) for v in rc.values()), uncommitted=sum(len(v) for v in ru.values()))
