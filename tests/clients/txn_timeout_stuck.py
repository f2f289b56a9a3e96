"""A transactional producer that leaves its transaction open: creates TOPIC (3 partitions),
begins a transaction with `transaction.timeout.ms` TIMEOUT_MS, writes `stuck-*` records to
every partition, flushes them into the log, creates READY_FILE and then waits to be
killed (the test kills it with SIGKILL; it exits 1 if that never happens).

usage: txn_timeout_stuck.py BOOTSTRAP TOPIC TIMEOUT_MS READY_FILE
"""

import sys
import time

from confluent_kafka import Producer

from samsa_common import check, create_topic, log

bootstrap, topic, timeout_ms, ready_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
PARTITIONS, PER_PARTITION = 3, 5
create_topic(bootstrap, topic, PARTITIONS)

producer = Producer({
    "bootstrap.servers": bootstrap,
    "transactional.id": f"{topic}-stuck",
    "transaction.timeout.ms": timeout_ms,
    "linger.ms": 1,
})
producer.init_transactions(30)
producer.begin_transaction()
for p in range(PARTITIONS):
    for i in range(PER_PARTITION):
        producer.produce(topic, partition=p, value=f"stuck-p{p}-{i}".encode())
check(producer.flush(30) == 0, "stuck records not delivered")
with open(ready_path, "w") as f:
    f.write("ready\n")
log("transaction open, records flushed; waiting to be killed")
time.sleep(120)
sys.exit("never killed")
