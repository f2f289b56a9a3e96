"""`GET /metrics` on a `samsa server`, read by Prometheus' own Python parser: the text
parses, and a consumer group's lag per partition has the right value."""

import urllib.request

from confluent_kafka import Consumer, Producer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

import samsa
from conftest import wait_until


def scrape(http):
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
        return r.read().decode()


def samples(text, name):
    """{labels tuple: value} of every sample of family `name` (parsing the whole text)."""
    families = {f.name: f for f in text_string_to_metric_families(text)}
    if name not in families:
        return {}
    return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples}


def lag_of(text, group):
    return {(dict(k)["topic"], int(dict(k)["partition"])): v for k, v in samples(text, "samsa_consumer_group_lag").items() if dict(k)["group"] == group}


def test_metrics_parse_as_prometheus_text_and_show_a_groups_lag(server):
    bootstrap, http = server
    samsa.Admin(bootstrap).create_topic("lagged", partitions=3)
    p = Producer({"bootstrap.servers": bootstrap})
    for partition, n in [(0, 50), (1, 30), (2, 20)]:
        for i in range(n):
            p.produce("lagged", value=f"v{i}".encode(), partition=partition)
    assert p.flush(30) == 0

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "lag-test", "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition("lagged", 0, 20), TopicPartition("lagged", 1, 30), TopicPartition("lagged", 2, 0)], asynchronous=False)

    text = wait_until("the HTTP API", lambda: scrape(http), timeout=30)
    # Every family parses; the broker's own numbers are there.
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    assert families["samsa_broker_request_duration_seconds"] == "histogram"
    assert families["samsa_consumer_group_lag"] == "gauge"
    assert samples(text, "samsa_broker_active_controller") == {(("node", "1"),): 1.0}
    assert samples(text, "samsa_topic_records_in")[(("topic", "lagged"),)] == 100.0
    produce = [s.value for f in text_string_to_metric_families(text) if f.name == "samsa_broker_request_duration_seconds" for s in f.samples if s.name.endswith("_count") and s.labels == {"api": "Produce"}]
    assert produce and produce[0] >= 1, produce
    assert lag_of(text, "lag-test") == {("lagged", 0): 30.0, ("lagged", 1): 0.0, ("lagged", 2): 20.0}

    # The lag follows new commits and new records.
    c.commit(offsets=[TopicPartition("lagged", 0, 50), TopicPartition("lagged", 2, 5)], asynchronous=False)
    for _ in range(7):
        p.produce("lagged", value=b"more", partition=1)
    assert p.flush(30) == 0
    assert lag_of(scrape(http), "lag-test") == {("lagged", 0): 0.0, ("lagged", 1): 7.0, ("lagged", 2): 15.0}
    c.close()
