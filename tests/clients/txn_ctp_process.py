"""Exactly-once consume-transform-produce with confluent-kafka: a group member of GROUP
(read_committed, no auto commit) reads INPUT in batches of at most BATCH records; each
batch becomes one transaction of the producer TXN_ID: one `out-<value>` record per input
record, to the same partition of OUTPUT with the same key, flushed, then a pause of
PAUSE_MS (widening the window in which a kill finds data of an open transaction in the
log), then the consumer's positions sent with send_offsets_to_transaction, then commit.
After each commit one line `<records>` is appended to PROGRESS_FILE.

Exits 0 once the group's committed offsets (read with require_stable) reach INPUT's high
watermark on all 3 partitions: everything is processed. A restart after a kill -9 resumes
from the committed offsets; init_transactions (same TXN_ID) first aborts the transaction
the killed run left open.

usage: txn_ctp_process.py BOOTSTRAP INPUT OUTPUT GROUP TXN_ID PROGRESS_FILE BATCH PAUSE_MS
"""

import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

from samsa_common import check, log, result

(bootstrap, input_topic, output_topic, group, txn_id, progress_path) = sys.argv[1:7]
batch, pause_s = int(sys.argv[7]), int(sys.argv[8]) / 1000
PARTITIONS = 3
DEADLINE_S = 120

producer = Producer({
    "bootstrap.servers": bootstrap,
    "transactional.id": txn_id,
    "linger.ms": 1,
    "retry.backoff.ms": 10,
})
# Before the consumer joins: fences a killed predecessor and aborts its open
# transaction, so the committed offsets the consumer starts from are final.
producer.init_transactions(30)

consumer = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": group,
    # Static membership: a restarted processor takes over the killed one's assignment
    # without waiting for its session to expire.
    "group.instance.id": f"{txn_id}-member",
    "session.timeout.ms": 6000,
    "isolation.level": "read_committed",
    "enable.auto.commit": False,
    "auto.offset.reset": "earliest",
})
consumer.subscribe([input_topic])
progress = open(progress_path, "a", buffering=1)
all_tps = [TopicPartition(input_topic, p) for p in range(PARTITIONS)]


def finished():
    """Whether the group's committed offsets reached the input's end on every partition."""
    if len(consumer.assignment()) != PARTITIONS:
        return False
    committed = consumer.committed(all_tps, timeout=10)
    for tp in committed:
        _, high = consumer.get_watermark_offsets(TopicPartition(input_topic, tp.partition),
                                                 timeout=10, cached=False)
        if tp.error is not None or tp.offset < high:
            return False
    return True


started = time.monotonic()
processed = transactions = 0
while True:
    check(time.monotonic() - started < DEADLINE_S, f"not finished within {DEADLINE_S} s")
    msgs = consumer.consume(num_messages=batch, timeout=0.2)
    for m in msgs:
        check(m.error() is None, f"consume error {m.error()}")
    if not msgs:
        if finished():
            break
        continue
    producer.begin_transaction()
    for m in msgs:
        producer.produce(output_topic, partition=m.partition(), key=m.key(),
                         value=b"out-" + m.value())
    check(producer.flush(30) == 0, "output records not delivered")
    time.sleep(pause_s)
    producer.send_offsets_to_transaction(consumer.position(consumer.assignment()),
                                         consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)
    processed += len(msgs)
    transactions += 1
    progress.write(f"{len(msgs)}\n")

consumer.close()
log(f"processed {processed} records in {transactions} transactions")
result(processed=processed, transactions=transactions)
