"""confluent-kafka transactional producer: TXNS transactions over the 3 partitions of a new
TOPIC, each writing PER_PARTITION records to every partition; every third transaction
(t % 3 == 2) is aborted after a flush (so its records reach the log), the others are
committed. Record values are `t{t:06d}-p{p}-{i}`.

Then reads the topic twice: read_committed must return exactly the committed records in
order on every partition (no aborted record, no control record, nothing missing), and
read_uncommitted exactly all of them. Each partition's high watermark must be
TXNS * (PER_PARTITION + 1): the records plus one transaction marker per transaction.

usage: txn_commit_abort.py BOOTSTRAP TOPIC TXNS PER_PARTITION
"""

import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from samsa_common import check, create_topic, log, result
from txn_common import read_to_end, values

bootstrap, topic, txns, per_partition = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
PARTITIONS = 3
create_topic(bootstrap, topic, PARTITIONS)

producer = Producer({
    "bootstrap.servers": bootstrap,
    "transactional.id": f"{topic}-txn",
    "linger.ms": 1,
    # librdkafka retries CONCURRENT_TRANSACTIONS (a new transaction while the previous
    # one's markers are being written) after this backoff.
    "retry.backoff.ms": 10,
})
producer.init_transactions(30)

failed = []


def on_delivery(err, msg):
    if err is not None:
        failed.append(f"{msg.value()}: {err}")


def value(t, p, i):
    return f"t{t:06d}-p{p}-{i}"


started = time.monotonic()
committed = aborted = 0
for t in range(txns):
    producer.begin_transaction()
    for p in range(PARTITIONS):
        for i in range(per_partition):
            producer.produce(topic, partition=p, key=f"t{t}".encode(),
                             value=value(t, p, i).encode(), on_delivery=on_delivery)
    producer.poll(0)
    if t % 3 == 2:
        # abort_transaction purges what is still queued: flush first so the aborted
        # records are in the log and read_committed has something to hide.
        check(producer.flush(30) == 0, f"flush before abort of txn {t} left records")
        producer.abort_transaction(30)
        aborted += 1
    else:
        producer.commit_transaction(30)
        committed += 1
    check(not failed, f"delivery failed in txn {t}: {failed[:3]}")
elapsed = time.monotonic() - started
log(f"{committed} committed + {aborted} aborted transactions in {elapsed:.1f} s")

want_all = {p: [value(t, p, i) for t in range(txns) for i in range(per_partition)]
            for p in range(PARTITIONS)}
want_committed = {p: [value(t, p, i) for t in range(txns) if t % 3 != 2
                      for i in range(per_partition)] for p in range(PARTITIONS)}

rc = read_to_end(bootstrap, topic, PARTITIONS, "read_committed")
got = values(rc)
for p in range(PARTITIONS):
    check(got[p] == want_committed[p],
          f"read_committed partition {p}: {len(got[p])} records, want {len(want_committed[p])}; "
          f"first difference at {next((i for i, (a, b) in enumerate(zip(got[p], want_committed[p])) if a != b), min(len(got[p]), len(want_committed[p])))}")
    offsets = [o for o, _, _ in rc[p]]
    check(offsets == sorted(set(offsets)), f"read_committed offsets not increasing on {p}")

ru = read_to_end(bootstrap, topic, PARTITIONS, "read_uncommitted")
got = values(ru)
for p in range(PARTITIONS):
    check(got[p] == want_all[p],
          f"read_uncommitted partition {p}: {len(got[p])} records, want {len(want_all[p])}")

probe = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}-probe"})
marks = [probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)
         for p in range(PARTITIONS)]
probe.close()
want_high = txns * (per_partition + 1)
check(all(high == want_high for _, high in marks),
      f"watermarks {marks}, want high {want_high} (records + one marker per transaction)")

result(committed=committed, aborted=aborted,
       read_committed=sum(len(v) for v in rc.values()),
       read_uncommitted=sum(len(v) for v in ru.values()),
       high_watermark=want_high, seconds=f"{elapsed:.1f}")
