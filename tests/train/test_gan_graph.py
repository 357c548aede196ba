"""`fastconv train gan` with its step replayed as one CUDA graph, on the CPU execution layer
(--device emu: the CUDA C kernels through the real launchers; its graph replay runs only the
captured launches, so work in the step that is not a kernel launch would be missing): a graph run
equals an eager run bit for bit (weights, BN statistics, Adam state and step counts, the logged
history, RNG state), and a graph run resumed from its own checkpoint equals an uninterrupted one,
for DCGAN and the conditional DCGAN."""

import shutil

import pytest

import fastconv
from fastconv import cli, emu

from .helpers import TINY_GAN, read_lines, same_checkpoints

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="fastconv.emu compiles the kernels with g++")
FLAGS = TINY_GAN + ["--train-size", "48", "--batch-size", "8", "--width", "4", "--nz", "8", "--device", "emu",
                    "--log-every", "2", "--sample-every", "100", "--n-samples", "4", "--d-steps", "2"]


@pytest.fixture
def on_emu():
    with emu.activate(), fastconv.using(kernels="cupy", tf32=False):
        yield


def _train(tmp_path, name, *extra):
    assert cli.main(["train", "gan", *FLAGS, *extra, "--out", str(tmp_path / name)]) == 0
    return tmp_path / name / "checkpoint.safetensors"


@pytest.mark.parametrize("model", ["dcgan", "cdcgan"])
def test_gan_graph_equals_eager_and_resumes_exactly(on_emu, tmp_path, capsys, model):
    m = ["--model", model]
    eager = _train(tmp_path, "eager", *m, "--iterations", "4", "--graph", "off")
    graph = _train(tmp_path, "graph", *m, "--iterations", "4", "--graph", "on")
    assert "the step replayed as a CUDA graph" in capsys.readouterr().out
    _train(tmp_path, "resumed", *m, "--iterations", "2", "--graph", "on")   # stops 2 of 3 iterations into epoch 1
    resumed = _train(tmp_path, "resumed", *m, "--iterations", "4", "--graph", "on", "--resume")
    meta = same_checkpoints(eager, graph)
    assert meta["iter"] == 4 and meta["arch"]["model"] == model
    same_checkpoints(eager, resumed)
    lines = [r for r in read_lines(tmp_path / "graph" / "metrics.jsonl") if r["kind"] == "train"]
    assert [r["iter"] for r in lines] == [2, 3, 4] and all(0 < r["d_x"] < 1 for r in lines), lines
