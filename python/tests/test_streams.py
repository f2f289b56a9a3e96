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


def test_session_windows_merge_when_a_record_bridges_two_sessions(broker, tmp_path):
    admin = samsa.Admin(broker.bootstrap)
    for t in ["clicks", "sessions", "session-pages"]:
        admin.create_topic(t, partitions=1)
    p = samsa.Producer(broker.bootstrap)
    base = 1_767_225_600_000
    # gap 10 s: 0 and 5 form a session, 30 starts another, 14 extends the first and 22
    # bridges [0, 14] and [30, 30] into one session [0, 30].
    for i, dt in enumerate([0, 5, 30, 14, 22]):
        p.send("clicks", json.dumps({"page": f"p{i}"}), key="u1", timestamp=base + dt * 1000)
    p.flush()
    app = samsa.StreamsApp("py-sessions", broker.bootstrap, state_dir=str(tmp_path / "state"), commit_interval_ms=100)
    grouped = app.stream("clicks").group_by_key().windowed_by(samsa.Session(10, grace=60))
    grouped.count().to("sessions")
    grouped.aggregate(list, lambda k, v, acc: acc + [v["page"]], merge=lambda k, a, b: a + b).to("session-pages")
    with pytest.raises(samsa.ConfigError):
        grouped.aggregate(list, lambda k, v, acc: acc)
    app.start()
    try:
        def read(topic, n):
            c = samsa.Consumer(broker.bootstrap, auto_offset_reset="earliest")
            c.assign([(topic, 0)])
            out = []
            deadline = time.monotonic() + 60
            while len(out) < n and time.monotonic() < deadline:
                out += [(tuple(json.loads(m.key)[1:]), None if m.value is None else json.loads(m.value)) for m in c.consume(100, timeout=1)]
            c.close()
            return out
        # Five updates and four tombstones: [0,0], [0,5] and [0,14] as the first session
        # grows, [30,30] when it merges into [0,30].
        counts = read("sessions", 9)
        pages = read("session-pages", 9)
    finally:
        app.close()
    ms = lambda a, b: (a * 1000 + base, b * 1000 + base)
    live = {}
    for window, value in counts:
        live[window] = value
    assert {w: v for w, v in live.items() if v is not None} == {ms(0, 30): 5}
    assert [w for w, v in counts if v is None] == [ms(0, 0), ms(0, 5), ms(0, 14), ms(30, 30)]
    assert len(counts) == 9
    final = [v for w, v in pages if w == ms(0, 30) and v is not None][-1]
    assert sorted(final) == ["p0", "p1", "p2", "p3", "p4"]


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
