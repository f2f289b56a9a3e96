"""Opens a transaction and holds it: transactional id TXN_ID writes one record to each of
TOPIC's 2 partitions, flushes, prints `open` on stdout, then waits until STOP_FILE exists
and commits.

usage: txn_hold_open.py BOOTSTRAP TOPIC TXN_ID STOP_FILE
"""

import os
import sys
import time

from confluent_kafka import Producer

from samsa_common import check, create_topic, result

bootstrap, topic, txn_id, stop = sys.argv[1:5]
create_topic(bootstrap, topic, 2)
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id})
producer.init_transactions(30)
producer.begin_transaction()
for p in range(2):
    producer.produce(topic, value=b"held", partition=p)
check(producer.flush(30) == 0, "records not delivered")
print("open", flush=True)
deadline = time.time() + 60
while not os.path.exists(stop) and time.time() < deadline:
    time.sleep(0.05)
check(os.path.exists(stop), "no stop file within 60 s")
producer.commit_transaction(30)
result(committed=2)
