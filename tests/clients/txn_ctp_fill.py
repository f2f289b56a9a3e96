"""Input for the consume-transform-produce test: creates INPUT and OUTPUT (3 partitions
each) and writes N records to INPUT with an idempotent producer, record i to partition
i % 3 with key `k{i}` and value `in-{i:06d}`.

usage: txn_ctp_fill.py BOOTSTRAP INPUT OUTPUT N
"""

import sys

from confluent_kafka import Producer

from samsa_common import check, create_topic, result

bootstrap, input_topic, output_topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
PARTITIONS = 3
create_topic(bootstrap, input_topic, PARTITIONS)
create_topic(bootstrap, output_topic, PARTITIONS)

failed = []
producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
for i in range(n):
    producer.produce(input_topic, partition=i % PARTITIONS, key=f"k{i}".encode(),
                     value=f"in-{i:06d}".encode(),
                     on_delivery=lambda err, msg: err is not None and failed.append(err))
    if i % 1000 == 0:
        producer.poll(0)
check(producer.flush(60) == 0, "input records not delivered")
check(not failed, f"input delivery failed: {failed[:3]}")
result(produced=n)
