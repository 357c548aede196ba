"""The index math of the v3 conv kernels (kernels/conv_index.cuh), compiled with g++ on the host:
every (block, thread, k-step) address of the forward, backward-data-phase and backward-weight
loaders, with each tile's thread map, against a naive im2col (fp32 and TF32 tiles); the phases of backward-data cover
each input-gradient element exactly once with exactly the taps that reach it; the carry iterator
against division; the TF32 fragment layout (mma_row: a bijection, pairs adjacent, conflict-free
packed-A loads for the tiles' row pitches; mma_slot: each ldmatrix matrix's rows consecutive, linear
over disjoint bits); the TF32 vec backward-weight's channels-last x loader
against a naive NHWC im2col, each 16-byte cell 4 consecutive channels valid together, and its thread
map (each cell of a stage once, a quarter warp on one row piece); a step past the reduction reads
nothing (tests/conv_index_check.cpp)."""

import shutil
import subprocess
from pathlib import Path

import pytest

from fastconv.backends.cuda import config as cfg
from fastconv.backends.cuda.loader import kernel_dir

HERE = Path(__file__).resolve().parent


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_conv_index_math_on_the_host(tmp_path):
    exe = tmp_path / "conv_index_check"
    subprocess.run(["g++", "-std=c++17", "-O1", "-I", str(kernel_dir()), "-o", str(exe),
                    str(HERE / "conv_index_check.cpp")], check=True, capture_output=True, text=True)
    specs = set(cfg.CONV_TILES.values()) | set(cfg.TF32_TILES.values())
    tiles = [str(v) for bm, bn, bk, nt, _ in sorted(specs) for v in (bn, bk, nt)]
    out = subprocess.run([str(exe), *tiles], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("ok"), out.stdout + out.stderr
    assert int(out.stdout.split()[1]) > 100_000  # the walk really visited the addresses
