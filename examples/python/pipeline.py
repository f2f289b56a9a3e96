"""A whole Samsa pipeline in one Python process: an embedded broker, a producer, a
Python streams app and a SQL query into pandas.

    pip install './python[pandas]'          # from the repository root, once
    python examples/python/pipeline.py

1. Starts an `EmbeddedBroker` in a temporary directory (removed at the end).
2. Produces 1,000 JSON orders `{"region", "item", "amount"}` to the topic `orders`.
3. Runs a streams app (exactly once, RocksDB state) whose Python callables count and
   total the orders per region into the topic `region-totals`, until its committed
   results (read with SQL) count every order; then closes it.
4. Reads `region-totals` with SQL into a pandas DataFrame, checks it against a SQL
   aggregation over the raw `orders` topic, adds each region's share in pandas, and
   prints it, then a last line of JSON: `{"apac": {"orders": 333, "total": 16833}, ...}`.

It ends by itself (exit code 0), or exits 1 if the app does not finish within 120 s.
"""

import json
import sys
import tempfile
import time

import samsa

REGIONS = ["eu", "us", "apac"]
ITEMS = ["keyboard", "mouse", "monitor", "cable", "laptop"]
COUNT = 1_000
TIMEOUT_S = 120


def orders():
    """The orders this example sends: deterministic, so its output is too."""
    for i in range(COUNT):
        yield f"order-{i}", {"region": REGIONS[i % 3], "item": ITEMS[i % 5], "amount": (i * 37) % 100 + 1}


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="samsa-pipeline-") as tmp, samsa.EmbeddedBroker(data_dir=f"{tmp}/broker") as broker:
        print(f"embedded broker on {broker.bootstrap}, data in {broker.data_dir}", flush=True)
        admin = samsa.Admin(broker.bootstrap)
        admin.create_topic("orders", partitions=3)
        admin.create_topic("region-totals", partitions=3)

        with samsa.Producer(broker.bootstrap, acks="all", linger_ms=5) as producer:
            for key, order in orders():
                producer.send("orders", json.dumps(order), key=key)
            producer.flush()
        print(f"produced {COUNT} orders", flush=True)

        # The streams app: orders re-keyed by region (through a repartition topic), then a
        # running count and total per region in a state store, written to region-totals.
        app = samsa.StreamsApp("region-totals", broker.bootstrap, state_dir=f"{tmp}/state", guarantee="exactly_once_v2", commit_interval_ms=100)
        (app.stream("orders", key="str", value="json")
            .group_by(lambda key, order: order["region"])
            .aggregate(lambda: {"orders": 0, "total": 0},
                       lambda region, order, acc: {"region": region, "orders": acc["orders"] + 1, "total": acc["total"] + order["amount"]})
            .to("region-totals", value="json"))

        # SQL over the app's output: a table, the latest value per region.
        broker.sql("CREATE TABLE region_totals (region VARCHAR, orders BIGINT, total BIGINT) PRIMARY KEY (region) "
                   "WITH (topic = 'region-totals', format = 'json')")

        def counted():
            """Orders in the app's committed totals (exactly once: each order counts once)."""
            return broker.sql("SELECT COALESCE(SUM(orders), 0) AS n FROM region_totals").column("n")[0].as_py()

        app.start()
        try:
            deadline = time.monotonic() + TIMEOUT_S
            while counted() < COUNT:
                if not app.running:
                    app.wait(1)  # raises samsa.StreamsError when a callable failed
                    print("the streams app stopped before it counted every order", file=sys.stderr)
                    return 1
                if time.monotonic() > deadline:
                    print(f"the streams app counted {counted()} of {COUNT} orders in {TIMEOUT_S} s", file=sys.stderr)
                    return 1
                time.sleep(0.2)
        finally:
            app.close()
        print(f"streams app counted {COUNT} orders", flush=True)

        # The totals into pandas.
        df = broker.sql("SELECT region, orders, total FROM region_totals ORDER BY region").to_pandas()
        # The same numbers straight from the input, with SQL's own GROUP BY.
        broker.sql("CREATE STREAM orders (region VARCHAR, item VARCHAR, amount BIGINT) WITH (topic = 'orders', format = 'json')")
        check = broker.sql("SELECT region, COUNT(*) AS orders, SUM(amount) AS total FROM orders GROUP BY region ORDER BY region").to_pandas()
        if df.values.tolist() != check.values.tolist():
            print(f"the streams totals differ from SQL's:\n{df}\n{check}", file=sys.stderr)
            return 1
        df["share"] = (df["total"] / df["total"].sum()).round(3)
        print(df.to_string(index=False))
        print(json.dumps({r.region: {"orders": int(r.orders), "total": int(r.total)} for r in df.itertuples()}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
