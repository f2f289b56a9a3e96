#!/usr/bin/env python3
"""Fails when the Python package's crate (samsa-python) resolves different dependency
features than the `samsa` binary (samsa-cli). With the same features, maturin's build
reuses the artifacts of `cargo build --bin samsa`; with different ones it compiles
DataFusion and RocksDB again (about 20 minutes on two cores). The fix is to add the
missing dependency (with its features) to python/Cargo.toml."""

import collections
import re
import subprocess
import sys


def features(package):
    out = subprocess.run(["cargo", "tree", "-p", package, "-e", "features", "--prefix", "none"], capture_output=True, text=True, check=True).stdout
    feats, names = collections.defaultdict(set), set()
    for line in out.splitlines():
        line = line.replace(" (*)", "")
        m = re.match(r'^(\S+) feature "([^"]+)"', line)
        if m:
            feats[m.group(1)].add(m.group(2))
            names.add(m.group(1))
            continue
        m = re.match(r"^(\S+) v", line)
        if m:
            names.add(m.group(1))
    return feats, names


cli, cli_names = features("samsa-cli")
py, py_names = features("samsa-python")
drift = [(n, sorted(cli[n] - py[n]), sorted(py[n] - cli[n])) for n in sorted(cli_names & py_names) if cli[n] != py[n]]
if drift:
    print("python-features: samsa-python and samsa-cli resolve different features, so maturin would rebuild them:", file=sys.stderr)
    for name, only_cli, only_py in drift:
        print(f"  {name}: only the binary has {only_cli}, only the Python crate has {only_py}", file=sys.stderr)
    print("  add the dependency that brings them to python/Cargo.toml (see the comment there)", file=sys.stderr)
    sys.exit(1)
print(f"python-features: samsa-python resolves the same features as samsa-cli ({len(cli_names & py_names)} shared crates)")
