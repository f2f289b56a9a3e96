"""One action as a SASL user, for the ACL tests (confluent-kafka).

usage: acl_client.py BOOTSTRAP USER PASSWORD ACTION TOPIC [GROUP]
  produce: one record to TOPIC            -> RESULT ok=1 | RESULT error=NAME
  consume: from TOPIC in GROUP (subscribe) -> RESULT ok=N | RESULT error=NAME
  topics:  the topics Metadata lists        -> RESULT topics=a,b,...
"""

import sys
import time

from confluent_kafka import Consumer, KafkaException, Producer

from samsa_common import log, result

bootstrap, user, password, action, topic = sys.argv[1:6]
group = sys.argv[6] if len(sys.argv) > 6 else None
errors = []
conf = {
    "bootstrap.servers": bootstrap,
    "security.protocol": "SASL_PLAINTEXT",
    "sasl.mechanism": "SCRAM-SHA-256",
    "sasl.username": user,
    "sasl.password": password,
    "error_cb": lambda e: errors.append(e),
}

if action == "produce":
    outcome = []
    p = Producer({**conf, "message.timeout.ms": 10000})
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: outcome.append(err))
    p.flush(15)
    err = outcome[0] if outcome else (errors[0] if errors else None)
    if err is None and outcome:
        result(ok=1)
    else:
        log("produce error:", err)
        result(error=err.name() if err else "TIMEOUT")
elif action == "consume":
    c = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got, err = 0, None
    deadline = time.time() + 15
    while time.time() < deadline and err is None:
        m = c.poll(0.5)
        if m is not None and m.error():
            err = m.error()
        elif m is not None:
            got += 1
        elif errors:
            err = errors[0]
    c.close()
    if err is not None:
        log("consume error:", err)
        result(error=err.name())
    else:
        result(ok=got)
elif action == "topics":
    p = Producer(conf)
    md = p.list_topics(timeout=10)
    result(topics=",".join(sorted(t for t in md.topics if not t.startswith("__"))))
else:
    raise SystemExit(f"unknown action {action}")
