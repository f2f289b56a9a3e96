"""kafka-python admin: create a topic with configs, describe its configs, delete it.

usage: kp_admin.py BOOTSTRAP
"""

import logging
import sys
import time

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic

from samsa_common import check, log, result

logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
bootstrap = sys.argv[1]
topic = "kp-admin-topic"

admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="samsa-kp-admin")
admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1,
                              topic_configs={"cleanup.policy": "compact",
                                             "retention.ms": "3600000"})])
deadline = time.monotonic() + 30
while topic not in admin.list_topics():
    check(time.monotonic() < deadline, f"{topic} not listed after creation")
    time.sleep(0.05)
described = admin.describe_topics([topic])
check(len(described) == 1 and len(described[0]["partitions"]) == 2,
      f"describe_topics: {described}")

configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)],
                                 config_filter="all")
log(f"describe_configs: {configs}")
entries = configs["topic"][topic]
check(entries.get("cleanup.policy", {}).get("value") == "compact",
      f"cleanup.policy: {entries.get('cleanup.policy')}")
check(entries.get("retention.ms", {}).get("value") == "3600000",
      f"retention.ms: {entries.get('retention.ms')}")
check("segment.bytes" in entries, f"default config segment.bytes missing: {sorted(entries)}")

only = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic,
                                              configs={"retention.ms": None})],
                              config_filter="all")["topic"][topic]
check(set(only) == {"retention.ms"}, f"describe of one key returned {sorted(only)}")

admin.delete_topics([topic])
deadline = time.monotonic() + 30
while topic in admin.list_topics():
    check(time.monotonic() < deadline, f"{topic} still listed 30 s after deletion")
    time.sleep(0.05)
admin.close()
result(created=topic, configs=len(entries), deleted=topic)
