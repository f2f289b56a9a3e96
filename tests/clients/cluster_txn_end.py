"""One transaction, ended and abandoned: creates TOPIC (3 partitions, RF 3) if needed, runs
one transaction with transactional id TXN_ID writing N records to each partition (values
`TAG-p-i`), commits or aborts it, prints RESULT and exits at once, without closing the
producer, so the test can kill the coordinator while it writes the markers.

usage: cluster_txn_end.py BOOTSTRAP TOPIC TXN_ID TAG N commit|abort
"""

import os
import sys

from confluent_kafka import Producer

from samsa_common import create_topic, log, result

bootstrap, topic, txn_id, tag, n, outcome = sys.argv[1:7]
n = int(n)
create_topic(bootstrap, topic, 3, replication_factor=3, exist_ok=True)

producer = Producer({
    "bootstrap.servers": bootstrap,
    "transactional.id": txn_id,
    "linger.ms": 5,
})
producer.init_transactions(30)
producer.begin_transaction()
for p in range(3):
    for i in range(n):
        producer.produce(topic, value=f"{tag}-{p}-{i}".encode(), partition=p)
# Flushed first: an abort would otherwise just drop unsent records.
producer.flush(30)
if outcome == "commit":
    producer.commit_transaction(30)
else:
    producer.abort_transaction(30)
log(f"transaction {txn_id} ended with {outcome}")
result(ended=outcome, records=3 * n)
sys.stdout.flush()
os._exit(0)
