"""Fixtures of the Python package's tests: an embedded broker per test, and the path of
the `samsa` binary for tests that start a `samsa server`."""

import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

import samsa

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def broker(tmp_path):
    with samsa.EmbeddedBroker(data_dir=str(tmp_path / "broker")) as b:
        yield b


def samsa_binary() -> pathlib.Path:
    """The `samsa` binary that scripts/test.sh builds (fails, never skips, when missing)."""
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.expanduser("~/.cache/samsa-target")
    path = pathlib.Path(target) / "debug" / "samsa"
    assert path.exists(), f"{path} is missing: run `cargo build --bin samsa` (scripts/test.sh does)"
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what, check, timeout=60.0, every=0.05):
    """Polls `check()` until it returns a truthy value; fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(every)


def python_script(tmp_path, name: str, source: str) -> list:
    """A command running `source` as a script with this interpreter."""
    path = tmp_path / name
    path.write_text(source)
    return [sys.executable, str(path)]


@pytest.fixture
def server(tmp_path):
    """A `samsa server` process with its HTTP API: yields (bootstrap, http address)."""
    kafka, http = free_port(), free_port()
    proc = subprocess.Popen(
        [str(samsa_binary()), "server", "--data-dir", str(tmp_path / "server"), "--listen", f"127.0.0.1:{kafka}", "--http-listen", f"127.0.0.1:{http}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "samsa listening on" in line, f"the server did not start: {line!r}"
        yield f"127.0.0.1:{kafka}", f"127.0.0.1:{http}"
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
