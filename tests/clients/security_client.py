"""confluent-kafka over a secured listener: produce N records, then consume them back.

usage: security_client.py BOOTSTRAP TOPIC N KEY=VALUE...   (client settings, e.g.
security.protocol=SASL_SSL sasl.mechanism=SCRAM-SHA-512 ...)

With N > 0: prints RESULT produced=N consumed=N. With N = 0 it only asks for metadata
and prints RESULT error=<the librdkafka error name>, or RESULT error=none.
"""

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer

from samsa_common import check, log, result

bootstrap, topic, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = dict(kv.split("=", 1) for kv in sys.argv[4:])
conf = {"bootstrap.servers": bootstrap, **settings}

if n == 0:
    errors = []
    conf["error_cb"] = lambda e: errors.append(e)
    client = Producer(conf)
    try:
        client.list_topics(timeout=8)
        result(error="none")
    except KafkaException as e:
        # The error callback (served by poll) says why: authentication, TLS, transport.
        deadline = time.time() + 5
        while not errors and time.time() < deadline:
            client.poll(0.2)
        first = errors[0] if errors else e.args[0]
        log("error:", first.str())
        result(error=first.name(), text=first.str().replace(" ", "_"))
    sys.exit(0)

p = Producer({**conf, "acks": "all"})
for i in range(n):
    p.produce(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
check(p.flush(30) == 0, "records left unsent")
c = Consumer({**conf, "group.id": f"sec-{topic}", "auto.offset.reset": "earliest"})
c.subscribe([topic])
got = []
deadline = time.time() + 60
while len(got) < n and time.time() < deadline:
    m = c.poll(1.0)
    if m is None:
        continue
    check(m.error() is None, f"consume error: {m.error()}")
    got.append(m.value().decode())
c.close()
check(sorted(got, key=lambda v: int(v[1:])) == [f"v{i}" for i in range(n)], f"consumed {len(got)} of {n}")
result(produced=n, consumed=len(got))
