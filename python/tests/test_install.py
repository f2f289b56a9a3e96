"""`pip install ./python` in a fresh virtual environment, then `import samsa`."""

import os

import subprocess
import sys

from conftest import ROOT


def test_pip_install_in_a_fresh_venv_then_import(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = dict(os.environ)
    # The same build profile and target dir as the test script's own install, so the
    # Rust build is shared (a fresh machine builds with the package's default profile).
    env.setdefault("MATURIN_PEP517_ARGS", "--profile dev")
    done = subprocess.run([str(py), "-m", "pip", "install", "-q", str(ROOT / "python")], env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"pip install ./python failed:\n{done.stdout}\n{done.stderr}"
    out = subprocess.run([str(py), "-c", "import samsa, sys; print(samsa.__version__, samsa.EmbeddedBroker.__doc__.split(chr(10))[0])"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("0.1.0 A single-node Kafka-compatible broker"), out.stdout
