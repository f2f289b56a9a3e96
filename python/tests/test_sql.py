"""SQL from Python: the embedded engine and a server's HTTP API, results as pyarrow."""

import json
import random
import threading
import time

import pandas as pd
import pyarrow as pa
import pytest

import samsa



def produce_orders(bootstrap, n, seed=7):
    rng = random.Random(seed)
    rows = [{"region": rng.choice(["eu", "us", "apac", "latam"]), "shop": f"s{rng.randrange(50)}", "amount": rng.randrange(1, 10_000), "qty": rng.randrange(1, 5)} for _ in range(n)]
    p = samsa.Producer(bootstrap, linger_ms=5)
    futures = p.send_batch("orders", [json.dumps(r) for r in rows])
    p.flush()
    assert futures[-1].result(30).offset >= 0
    p.close()
    return pd.DataFrame(rows)


def test_group_by_over_100k_records_equals_pandas(broker):
    samsa.Admin(broker.bootstrap).create_topic("orders", partitions=3)
    df = produce_orders(broker.bootstrap, 100_000)
    created = broker.sql("CREATE STREAM orders (region VARCHAR, shop VARCHAR, amount BIGINT, qty BIGINT) WITH (topic = 'orders', format = 'json')")
    assert created.schema.metadata[b"samsa.message"].startswith(b"Stream orders created")
    got = broker.sql("SELECT region, shop, COUNT(*) AS n, SUM(amount) AS total, MAX(qty) AS most FROM orders GROUP BY region, shop")
    assert isinstance(got, pa.Table)
    assert got.num_rows == df.groupby(["region", "shop"]).ngroups
    want = df.groupby(["region", "shop"]).agg(n=("amount", "size"), total=("amount", "sum"), most=("qty", "max")).reset_index()
    got_df = got.to_pandas().sort_values(["region", "shop"]).reset_index(drop=True)
    want = want.sort_values(["region", "shop"]).reset_index(drop=True)
    for col in ["region", "shop", "n", "total", "most"]:
        assert got_df[col].tolist() == want[col].tolist(), col


def test_sql_errors_are_sql_errors_with_position_and_hint(broker):
    with pytest.raises(samsa.SqlError) as typo:
        broker.sql("SELEC 1")
    assert typo.value.position == (1, 1)
    assert "SELECT" in (typo.value.hint or "")
    broker.sql("CREATE STREAM t (a BIGINT) WITH (topic = 't', format = 'json', partitions = 1)")
    with pytest.raises(samsa.SqlError) as col:
        broker.sql("SELECT nope FROM t")
    assert "t.a" in str(col.value), str(col.value)
    with pytest.raises(samsa.SqlError) as missing:
        broker.sql("SELECT * FROM no_such_stream")
    assert "no_such_stream" in str(missing.value)


def test_emit_changes_yields_record_batches_as_input_arrives(broker):
    broker.sql("CREATE STREAM clicks (page VARCHAR, ms BIGINT) WITH (topic = 'clicks', format = 'json', partitions = 1)")
    batches = broker.sql("SELECT page, ms * 2 AS twice FROM clicks WHERE ms > 10 EMIT CHANGES")
    assert isinstance(batches, samsa.SqlBatches)
    assert batches.schema.names == ["page", "twice"]
    p = samsa.Producer(broker.bootstrap)
    for page, ms in [("a", 5), ("b", 20), ("c", 30)]:
        p.send("clicks", json.dumps({"page": page, "ms": ms}))
    p.flush()
    rows = []
    deadline = time.monotonic() + 30
    while len(rows) < 2 and time.monotonic() < deadline:
        b = batches.next(timeout=1)
        if b is not None:
            assert isinstance(b, pa.RecordBatch)
            rows.extend(b.to_pylist())
    batches.close()
    assert rows == [{"page": "b", "twice": 40}, {"page": "c", "twice": 60}]


def test_closing_a_continuous_result_ends_an_iteration_in_another_thread(broker):
    broker.sql("CREATE STREAM quiet (a BIGINT) WITH (topic = 'quiet', format = 'json', partitions = 1)")
    batches = broker.sql("SELECT a FROM quiet EMIT CHANGES")
    ended = threading.Event()

    def drain():
        for _ in batches:
            pass
        ended.set()

    t = threading.Thread(target=drain, daemon=True)
    t.start()
    time.sleep(0.5)  # let the thread start waiting for a batch that never comes
    assert not ended.is_set()
    batches.close()
    assert ended.wait(10), "the iteration did not end after close()"


def test_samsa_sql_over_a_servers_http_api(server):
    bootstrap, http = server
    p = samsa.Producer(bootstrap)
    for i in range(10):
        p.send("events", json.dumps({"k": f"k{i % 2}", "v": i}))
    p.flush()
    samsa.sql("CREATE STREAM events (k VARCHAR, v BIGINT) WITH (topic = 'events', format = 'json')", server=http)
    t = samsa.sql("SELECT k, SUM(v) AS s FROM events GROUP BY k ORDER BY k", server=http)
    assert t.to_pydict() == {"k": ["k0", "k1"], "s": [20, 25]}
    with pytest.raises(samsa.SqlError) as e:
        samsa.sql("SELEC k FROM events", server=http)
    assert e.value.position == (1, 1) and "SELECT" in e.value.hint
    live = samsa.sql("SELECT v FROM events WHERE v >= 100 EMIT CHANGES", server=http)
    got = []

    def read():
        for b in live:
            got.extend(b.column("v").to_pylist())
            return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    p.send("events", json.dumps({"k": "k9", "v": 100}))
    p.flush()
    reader.join(30)
    live.close()
    assert got == [100]


def test_sql_on_an_unreachable_server_says_so():
    with pytest.raises(samsa.BrokerUnavailableError) as e:
        samsa.sql("SELECT 1", server="127.0.0.1:1")
    assert "samsa server" in str(e.value)
