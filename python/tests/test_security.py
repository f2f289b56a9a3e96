"""The Python package over secured listeners: SASL_SSL with SCRAM-SHA-512, by Kafka's
property names as keyword arguments; a wrong password is a KafkaError naming
SASL_AUTHENTICATION_FAILED."""

import subprocess
import time

import pytest

import samsa
from conftest import free_port, samsa_binary


def openssl(cwd, *args):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def secured(tmp_path):
    """A `samsa server` with PLAINTEXT and SASL_SSL listeners and a user alice: yields
    (plaintext address, SASL_SSL address, CA file)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    openssl(tmp_path, "req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Test CA")
    (tmp_path / "server.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl(tmp_path, "req", *ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    openssl(tmp_path, "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
    plain, tls = free_port(), free_port()
    proc = subprocess.Popen(
        [str(samsa_binary()), "server", "--data-dir", str(tmp_path / "data"), "--no-http",
         "--listen", f"127.0.0.1:{plain}", "--listen", f"SASL_SSL://127.0.0.1:{tls}",
         "--set", f"ssl.certificate.location={tmp_path / 'server.pem'}", "--set", f"ssl.key.location={tmp_path / 'server.key'}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        assert "samsa listening on" in proc.stdout.readline()
        subprocess.run([str(samsa_binary()), "user", "add", "alice", "--password", "alice-secret", "--bootstrap", f"127.0.0.1:{plain}"], check=True, capture_output=True)
        yield f"127.0.0.1:{plain}", f"127.0.0.1:{tls}", str(tmp_path / "ca.pem")
    finally:
        proc.terminate()
        proc.wait(30)


def test_producer_and_consumer_over_sasl_ssl_with_scram(secured):
    _, tls, ca = secured
    login = dict(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="alice", sasl_password="alice-secret", ssl_ca_location=ca)
    samsa.Admin(tls, **login).create_topic("py-secured", partitions=2)
    p = samsa.Producer(tls, acks="all", **login)
    for i in range(50):
        p.send("py-secured", f"v{i}", key=f"k{i}")
    p.flush()
    c = samsa.Consumer(tls, group_id="py-sec", topics=["py-secured"], auto_offset_reset="earliest", **login)
    got = set()
    deadline = time.monotonic() + 60
    while len(got) < 50 and time.monotonic() < deadline:
        for m in c.consume(100, timeout=1):
            got.add(m.value)
    c.close()
    assert got == {f"v{i}".encode() for i in range(50)}

    with pytest.raises(samsa.KafkaError) as e:
        samsa.Admin(tls, **{**login, "sasl_password": "wrong"}).list_topics()
    assert e.value.name == "SASL_AUTHENTICATION_FAILED", e.value
    assert "invalid credentials" in str(e.value)
