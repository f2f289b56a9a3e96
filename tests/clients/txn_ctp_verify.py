"""Checks the consume-transform-produce output: a read_committed read of OUTPUT must hold
`out-in-{i:06d}` exactly once for every i < N, on partition i % 3, in input order, with
key `k{i}`; GROUP's committed offsets must be INPUT's high watermarks. Reports how many
records read_uncommitted sees on top (output of aborted transactions).

usage: txn_ctp_verify.py BOOTSTRAP INPUT OUTPUT GROUP N
"""

import sys
from collections import Counter

from confluent_kafka import Consumer, TopicPartition

from samsa_common import check, result
from txn_common import read_to_end

bootstrap, input_topic, output_topic, group, n = sys.argv[1:5] + [int(sys.argv[5])]
PARTITIONS = 3

rc = read_to_end(bootstrap, output_topic, PARTITIONS, "read_committed")
counts = Counter(v for rs in rc.values() for _, _, v in rs)
missing = [i for i in range(n) if counts[f"out-in-{i:06d}"] == 0]
duplicated = sorted(v for v, c in counts.items() if c > 1)
unexpected = sorted(set(counts) - {f"out-in-{i:06d}" for i in range(n)})
check(not missing and not duplicated and not unexpected,
      f"read_committed output: {len(missing)} missing (first {missing[:10]}), "
      f"{len(duplicated)} duplicated (first {duplicated[:10]}), unexpected {unexpected[:10]}")
for p in range(PARTITIONS):
    want = [(f"k{i}", f"out-in-{i:06d}") for i in range(p, n, PARTITIONS)]
    got = [(k, v) for _, k, v in rc[p]]
    check(got == want, f"output partition {p} not in input order or misplaced")

probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                  "isolation.level": "read_committed"})
committed = probe.committed([TopicPartition(input_topic, p) for p in range(PARTITIONS)], timeout=10)
marks = [probe.get_watermark_offsets(TopicPartition(input_topic, p), timeout=10, cached=False)[1]
         for p in range(PARTITIONS)]
probe.close()
check([tp.offset for tp in committed] == marks,
      f"group {group} committed {committed}, want the input's high watermarks {marks}")

ru = read_to_end(bootstrap, output_topic, PARTITIONS, "read_uncommitted")
uncommitted = sum(map(len, ru.values()))
check(uncommitted >= n, f"read_uncommitted saw {uncommitted} < {n} records")
result(exactly_once=n, aborted_output=uncommitted - n)
