"""After a transaction was left open on TOPIC (see txn_timeout_stuck.py): a plain
(non-transactional) producer writes `after-*` records to every partition behind the open
transaction. They can become visible to read_committed only once the last stable offset
moves past the open transaction, that is once the broker aborted it for its timeout. A
read_committed reader must then see exactly the `after-*` records (within a deadline), a
read_uncommitted reader the `stuck-*` and then the `after-*` records.

usage: txn_timeout_verify.py BOOTSTRAP TOPIC
"""

import sys
import time

from confluent_kafka import Producer

from samsa_common import check, log, result
from txn_common import read_to_end, values

bootstrap, topic = sys.argv[1:3]
PARTITIONS, PER_PARTITION = 3, 5

started = time.monotonic()
plain = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
for p in range(PARTITIONS):
    for i in range(PER_PARTITION):
        plain.produce(topic, partition=p, value=f"after-p{p}-{i}".encode())
check(plain.flush(30) == 0, "after records not delivered")

after = {p: [f"after-p{p}-{i}" for i in range(PER_PARTITION)] for p in range(PARTITIONS)}
stuck = {p: [f"stuck-p{p}-{i}" for i in range(PER_PARTITION)] for p in range(PARTITIONS)}
rc = values(read_to_end(bootstrap, topic, PARTITIONS, "read_committed", timeout=30))
visible_s = time.monotonic() - started
check(rc == after, f"read_committed saw {rc}, want only {after}")
ru = values(read_to_end(bootstrap, topic, PARTITIONS, "read_uncommitted"))
check(ru == {p: stuck[p] + after[p] for p in range(PARTITIONS)}, f"read_uncommitted saw {ru}")
log(f"after records visible to read_committed {visible_s:.2f} s after being produced")
result(read_committed=sum(map(len, rc.values())), read_uncommitted=sum(map(len, ru.values())),
       visible_s=f"{visible_s:.2f}")
