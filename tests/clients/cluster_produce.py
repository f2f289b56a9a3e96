"""confluent-kafka idempotent producer for the cluster failover tests: writes COUNT records
(value = the decimal sequence number, partition = seq % PARTITIONS) with acks=all and
enable.idempotence=true, and records every delivery report.

usage: cluster_produce.py BOOTSTRAP TOPIC COUNT PARTITIONS PROGRESS_FILE ACKED_FILE [RATE]

RATE (records per second, default 0 = as fast as possible) paces production, so that a
failure injected at some fraction of the acknowledgements really lands in mid-stream.

PROGRESS_FILE is rewritten (atomically) about every 20 ms with the number of acknowledged
records, so the test can act once enough are acknowledged.
ACKED_FILE gets, at the end, one line per acknowledged record: `PARTITION OFFSET SEQ`.
Prints a JSON summary line (`SUMMARY {...}`) and `RESULT acked=N delivery_errors=E
fatal=F unacked=U`; the delivery errors (code name and message, first 20) and the
error_cb reports are in the JSON. Delivery errors do not fail the script: the Rust test
asserts on them and shows them.
"""

import json
import os
import sys
import time

from confluent_kafka import KafkaException, Producer

from samsa_common import log, result

bootstrap, topic, count, partitions, progress_file, acked_file = sys.argv[1:7]
count = int(count)
partitions = int(partitions)
rate = float(sys.argv[7]) if len(sys.argv) > 7 else 0.0
DEADLINE_S = 240.0

acked = []  # (partition, offset, seq)
delivery_errors = []  # (seq, code name, message, retriable, fatal)
error_cb_reports = []  # (code name, message, fatal)


def on_error(err):
    error_cb_reports.append((err.name(), err.str(), err.fatal()))
    log(f"error_cb: {err.name()}: {err.str()} fatal={err.fatal()}")


def on_delivery(err, msg):
    seq = int(msg.value())
    if err is not None:
        delivery_errors.append((seq, err.name(), err.str(), err.retriable(), err.fatal()))
        if len(delivery_errors) <= 20:
            log(f"delivery error for seq {seq} (partition {msg.partition()}): {err.name()}: {err.str()}")
    else:
        acked.append((msg.partition(), msg.offset(), seq))


producer = Producer({
    "bootstrap.servers": bootstrap,
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 5,
    "message.timeout.ms": int(DEADLINE_S * 1000) - 20_000,
    "retry.backoff.ms": 100,
    "reconnect.backoff.ms": 100,
    "reconnect.backoff.max.ms": 1000,
    "topic.metadata.refresh.interval.ms": 1000,
    "error_cb": on_error,
})

last_progress = 0.0


def write_progress(force=False):
    global last_progress
    now = time.monotonic()
    if not force and now - last_progress < 0.02:
        return
    last_progress = now
    tmp = progress_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{len(acked)}\n")
    os.replace(tmp, progress_file)


start = time.monotonic()
deadline = start + DEADLINE_S
produce_failure = None
for seq in range(count):
    if produce_failure is not None:
        break
    while True:
        try:
            producer.produce(topic, value=str(seq).encode(), partition=seq % partitions, on_delivery=on_delivery)
            break
        except KafkaException as e:
            # A fatal (idempotence) error makes produce() refuse everything from now on.
            produce_failure = f"produce() of seq {seq} raised {e}"
            log(produce_failure)
            break
        except BufferError:
            producer.poll(0.05)
            write_progress()
            if time.monotonic() > deadline:
                raise AssertionError(f"local queue still full after {DEADLINE_S} s at seq {seq}")
    if seq % 100 == 0:
        producer.poll(0)
        write_progress()
        if rate > 0:
            # Ahead of schedule: serve delivery reports until the next record is due.
            while True:
                ahead = start + seq / rate - time.monotonic()
                if ahead <= 0:
                    break
                producer.poll(min(ahead, 0.02))
                write_progress()

log(f"all {count} records queued after {time.monotonic() - start:.1f} s; flushing")
while len(producer) > 0 and time.monotonic() < deadline:
    producer.poll(0.1)
    write_progress()
producer.flush(1)
write_progress(force=True)
unacked = len(producer)
elapsed = time.monotonic() - start
log(f"done after {elapsed:.1f} s: {len(acked)} acked, {len(delivery_errors)} delivery errors, {unacked} never reported")

with open(acked_file, "w") as f:
    for p, off, seq in acked:
        f.write(f"{p} {off} {seq}\n")

codes = {}
for _, name, _, _, _ in delivery_errors:
    codes[name] = codes.get(name, 0) + 1
fatal = [r for r in error_cb_reports if r[2]]
summary = {
    "acked": len(acked),
    "delivery_errors": len(delivery_errors),
    "delivery_error_codes": codes,
    "first_delivery_errors": [
        {"seq": s, "code": n, "message": m, "retriable": r, "fatal": fa} for s, n, m, r, fa in delivery_errors[:20]
    ],
    "error_cb": [{"code": n, "message": m, "fatal": fa} for n, m, fa in error_cb_reports[:50]],
    "fatal_errors": len(fatal),
    "unacked": unacked,
    "produce_failure": produce_failure,
    "elapsed_s": round(elapsed, 2),
}
print("SUMMARY " + json.dumps(summary), flush=True)
result(acked=len(acked), delivery_errors=len(delivery_errors), fatal=len(fatal), unacked=unacked,
       produce_failed=int(produce_failure is not None))
