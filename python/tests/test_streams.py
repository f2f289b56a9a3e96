"""Python streams applications on Samsa's engine."""

import collections
import json
import random
import signal
import subprocess
import time

import pytest

import samsa
from conftest import python_script, wait_until

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]

WORD_COUNT_APP = """
import sys, time, samsa
bootstrap, state_dir = sys.argv[1], sys.argv[2]
app = samsa.StreamsApp("py-wordcount", bootstrap, state_dir=state_dir, guarantee="exactly_once_v2", commit_interval_ms=100)
(app.stream("lines", value="str")
    .peek(lambda k, v: time.sleep(0.0005))  # slow enough to be killed mid-run
    .flat_map_values(lambda line: line.split())
    .group_by(lambda k, word: word)
    .count()
    .to("word-counts", value="str"))
print("running", flush=True)
try:
    app.run()
except KeyboardInterrupt:
    pass  # run() closed the app cleanly before re-raising
"""


def committed_counts(bootstrap):
    """The latest count per word in word-counts, as a read_committed consumer sees it."""
    c = samsa.Consumer(bootstrap, auto_offset_reset="earliest", isolation_level="read_committed")
    c.assign([("word-counts", 0), ("word-counts", 1)])
    latest = {}
    first = True
    while True:
        batch = c.consume(1000, timeout=30 if first else 2)
        first = False
        if not batch:
            break
        for m in batch:
            latest[m.key.decode()] = int(m.value)
    c.close()
    return latest


def lines_done(admin):
    """How many input lines the word count has committed."""
    return sum(o for (topic, _), o in admin.group_offsets("py-wordcount").items() if topic == "lines")


def committed_counts(bootstrap):
    """The latest count per word in word-counts, as a read_committed consumer sees it."""
    c = samsa.Consumer(bootstrap, auto_offset_reset="earliest", isolation_level="read_committed")
    c.assign([("word-counts", 0), ("word-counts", 1)])
    latest = {}
    first = True
    while True:
        batch = c.consume(1000, timeout=30 if first else 2)
        first = False
        if not batch:
            break
        for m in batch:
            latest[m.key.decode()] = int(m.value)
    c.close()
    return latest


def lines_done(admin):
    """How many input lines the word count has committed."""
    return sum(o for (topic, _), o in admin.group_offsets("py-wordcount").items() if topic == "lines")


def counting_done(admin):
    """Whether the counting sub-topology has committed all of its input (the repartition
    topic, which also holds the killed instance's aborted records and the markers)."""
    committed = {tp: o for tp, o in admin.group_offsets("py-wordcount").items() if "repartition" in tp[0]}
    return bool(committed) and admin.list_offsets(list(committed)) == committed


def test_word_count_exactly_once_killed_mid_run_and_restarted(broker, tmp_path):
    admin = samsa.Admin(broker.bootstrap)
    admin.create_topic("lines", partitions=2)
    admin.create_topic("word-counts", partitions=2)
    rng = random.Random(3)
    lines = [" ".join(rng.choice(WORDS) for _ in range(rng.randrange(1, 8))) for _ in range(6_000)]
    want = collections.Counter(w for line in lines for w in line.split())
    p = samsa.Producer(broker.bootstrap)
    p.send_batch("lines", [(f"l{i}", line) for i, line in enumerate(lines)])
    p.flush()

    cmd = python_script(tmp_path, "wordcount.py", WORD_COUNT_APP) + [broker.bootstrap, str(tmp_path / "state")]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "running"
        # Kill it once some counts are committed, well before the input is done.
        wait_until("the first committed counts", lambda: lines_done(admin) >= 300, timeout=120)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        first.kill()
    done_before = lines_done(admin)
    assert done_before < len(lines), "the app finished before it was killed; the test needs a slower app"

    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert second.stdout.readline().strip() == "running"
        wait_until("every line read", lambda: lines_done(admin) == len(lines), timeout=240, every=0.5)
        # The counting sub-topology lags behind (it reads the repartition topic): wait
        # until the committed counts stop changing at the expected values. A lost or
        # doubled update would keep them off forever.
        seen = []
        try:
            wait_until("exact counts", lambda: seen.append(committed_counts(broker.bootstrap)) or seen[-1] == dict(want), timeout=120, every=1)
        except AssertionError:
            assert seen[-1] == dict(want)
        second.send_signal(signal.SIGINT)
        assert second.wait(60) == 0
    finally:
        second.kill()
    assert committed_counts(broker.bootstrap) == dict(want)


def test_windowed_aggregate_and_table_join(broker, tmp_path):
    admin = samsa.Admin(broker.bootstrap)
    # The views' repartition topic must take the users' partition count (one), not the
    # views' (three), for every view to meet its user.
    admin.create_topic("views", partitions=3)
    for t in ["users", "enriched", "per-minute"]:
        admin.create_topic(t, partitions=1)
    p = samsa.Producer(broker.bootstrap)
    p.send("users", json.dumps({"name": "Ann", "tier": "gold"}), key="u1")
    p.send("users", json.dumps({"name": "Bob", "tier": "free"}), key="u2")
    p.flush()
    base = 1_767_225_600_000  # a minute boundary
    for user, page, dt in [("u1", "home", 1_000), ("u2", "home", 2_000), ("u1", "cart", 30_000), ("u1", "home", 61_000)]:
        p.send("views", json.dumps({"page": page}), key=user, timestamp=base + dt)
    p.flush()

    app = samsa.StreamsApp("py-views", broker.bootstrap, state_dir=str(tmp_path / "state"), commit_interval_ms=100)
    users = app.table("users")
    views = app.stream("views")
    views.join(users, lambda view, user: {"page": view["page"], "tier": user["tier"]}).to("enriched")
    (views.group_by(lambda user, view: view["page"])
        .windowed_by(samsa.Tumbling(60))
        .aggregate(lambda: {"n": 0}, lambda page, view, acc: {"n": acc["n"] + 1})
        .to("per-minute"))
    app.start()
    try:
        c = samsa.Consumer(broker.bootstrap, group_id="e", topics=["enriched", "per-minute"], auto_offset_reset="earliest")
        got = collections.defaultdict(list)
        deadline = time.monotonic() + 60
        while sum(len(v) for v in got.values()) < 8 and time.monotonic() < deadline:
            for m in c.consume(100, timeout=1):
                got[m.topic].append((m.key.decode(), json.loads(m.value)))
        c.close()
    finally:
        app.close()
    key = lambda kv: (kv[0], kv[1]["page"])
    assert sorted(got["enriched"], key=key) == sorted([("u1", {"page": "home", "tier": "gold"}), ("u2", {"page": "home", "tier": "free"}), ("u1", {"page": "cart", "tier": "gold"}), ("u1", {"page": "home", "tier": "gold"})], key=key)
    latest = {}
    for key, value in got["per-minute"]:
        page, start, end = json.loads(key)
        assert end - start == 60_000
        latest[(page, start - base)] = value["n"]
    assert latest == {("home", 0): 2, ("cart", 0): 1, ("home", 60_000): 1}


def test_a_callable_that_raises_fails_the_app_with_its_exception(broker, tmp_path):
    p = samsa.Producer(broker.bootstrap)
    p.send("numbers", "0")
    p.flush()
    app = samsa.StreamsApp("py-fails", broker.bootstrap, state_dir=str(tmp_path / "state"))
    app.stream("numbers", value="json").map_values(lambda v: 1 / v).to("inverses")
    with pytest.raises(samsa.StreamsError) as e:
        app.run()
    assert isinstance(e.value.__cause__, ZeroDivisionError)
    assert "ZeroDivisionError" in str(e.value)


def test_bad_topology_and_values_are_reported(broker, tmp_path):
    app = samsa.StreamsApp("py-bad", broker.bootstrap, state_dir=str(tmp_path / "state"))
    with pytest.raises(samsa.ConfigError):
        app.stream("x", value="yaml")
    with pytest.raises(samsa.ConfigError):
        app.stream("x").group_by_key().windowed_by(samsa.Hopping(10, 20))
    with pytest.raises(samsa.ConfigError):
        app.stream("x").filter(42)
