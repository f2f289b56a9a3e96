"""Produce then consume N 1 KiB records through one partition with confluent-kafka and print
throughput. Used by scripts/bench.sh; not a test (numbers depend on the machine)."""
import sys
import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

addr, n = sys.argv[1], int(sys.argv[2])
size = 1024
topic = "bench"
admin = AdminClient({"bootstrap.servers": addr})  # must outlive the future
admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)

payload = b"x" * size
p = Producer({"bootstrap.servers": addr, "acks": 1, "linger.ms": 5, "batch.size": 1_000_000,
              "queue.buffering.max.messages": 1_000_000, "compression.type": "none"})
errors = []
def on_delivery(err, _msg):
    if err:
        errors.append(err)
start = time.perf_counter()
for _ in range(n):
    while True:
        try:
            p.produce(topic, payload, callback=on_delivery)
            break
        except BufferError:
            p.poll(0.01)
    p.poll(0)
p.flush(120)
produce_s = time.perf_counter() - start
if errors:
    sys.exit(f"bench: {len(errors)} delivery errors, first: {errors[0]}")

c = Consumer({"bootstrap.servers": addr, "group.id": "bench", "auto.offset.reset": "earliest",
              "enable.auto.commit": False, "fetch.max.bytes": 52428800})
c.subscribe([topic])
got = 0
start = None
deadline = time.time() + 300
while got < n and time.time() < deadline:
    msgs = c.consume(10000, 1.0)
    if msgs and start is None:
        start = time.perf_counter()
    got += sum(1 for m in msgs if not m.error())
consume_s = time.perf_counter() - (start or time.perf_counter())
c.close()
if got < n:
    sys.exit(f"bench: consumed only {got} of {n} records")

mb = n * size / 1e6
print(f"{'phase':<10}{'records':>12}{'seconds':>10}{'MB/s':>10}{'records/s':>14}")
for phase, s in (("produce", produce_s), ("consume", consume_s)):
    print(f"{phase:<10}{n:>12}{s:>10.2f}{mb / s:>10.1f}{n / s:>14,.0f}")
