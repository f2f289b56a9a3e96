"""The Python example pipeline (examples/python/pipeline.py), run as its users run it: a
separate interpreter, ending by itself, printing the per-region totals."""

import json
import os
import pathlib
import subprocess
import sys

from conftest import ROOT

SCRIPT = ROOT / "examples" / "python" / "pipeline.py"


def expected_totals():
    """The orders the script sends (region i % 3, amount (i * 37) % 100 + 1, for i below
    1000), totalled here independently of Samsa."""
    totals = {}
    for i in range(1000):
        t = totals.setdefault(["eu", "us", "apac"][i % 3], {"orders": 0, "total": 0})
        t["orders"] += 1
        t["total"] += (i * 37) % 100 + 1
    return totals


def test_pipeline_runs_to_the_end_and_prints_the_exact_totals(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp))  # where the script's temporary data directory goes
    run = subprocess.run([sys.executable, str(SCRIPT)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"exit code {run.returncode}\nstdout:\n{run.stdout}\nstderr:\n{run.stderr}"
    lines = run.stdout.strip().splitlines()
    # The last line: JSON of the totals, exactly (keys sorted).
    assert lines[-1] == json.dumps(expected_totals(), sort_keys=True), run.stdout
    assert lines[-1] == '{"apac": {"orders": 333, "total": 16833}, "eu": {"orders": 334, "total": 16855}, "us": {"orders": 333, "total": 16812}}'
    # The pandas table above it: one row per region with its share of the revenue.
    assert lines[-5:-1] == [
        "region  orders  total  share",
        "  apac     333  16833  0.333",
        "    eu     334  16855  0.334",
        "    us     333  16812  0.333",
    ], run.stdout
    assert "produced 1000 orders" in lines and "streams app counted 1000 orders" in lines, run.stdout
    # The broker kept its data in a temporary directory, removed at the end.
    data = pathlib.Path(lines[0].split(", data in ")[1])
    assert lines[0].startswith("embedded broker on 127.0.0.1:") and data.is_relative_to(tmp), lines[0]
    assert not data.exists() and list(tmp.iterdir()) == []
