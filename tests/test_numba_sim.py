"""Runs tests/numba_sim (every numba-family kernel under the CUDA simulator) in child pytests, one
per file, so that pytest-xdist spreads them over the workers.

NUMBA_ENABLE_CUDASIM must be set before numba is first imported, so the simulator tests cannot
share this process; tests/conftest.py keeps them out of the main collection.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SIM_FILES = sorted(p.name for p in (ROOT / "tests" / "numba_sim").glob("test_*.py"))


@pytest.mark.parametrize("name", SIM_FILES)
def test_numba_kernels_under_simulator(name):
    pytest.importorskip("numba")
    pytest.importorskip("numba.cuda")
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", f"tests/numba_sim/{name}", "-q", "-p", "no:cacheprovider",
         "--confcutdir", "tests/numba_sim"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        pytest.fail(f"simulator tests of {name} failed (exit {proc.returncode}):\n{proc.stdout[-12000:]}\n{proc.stderr[-4000:]}",
                    pytrace=False)
