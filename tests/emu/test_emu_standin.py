"""The CuPy stand-in of fastconv.emu as a tool: the trace (launch list, allocations, host copies,
synchronisations), the no-execute mode, graph capture as recording, the memory pool limit, and
selection by FASTCONV_DEVICE=emu in a fresh process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import fastconv.emu as emu
from fastconv import ops
from fastconv.testing import assert_close


def test_trace_counts_launches_allocations_copies_and_syncs(cp, rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    with emu.trace() as t:
        xd = cp.asarray(x)
        y = ops.relu_forward(xd)
        s = float(y.sum())
        cp.cuda.get_current_stream().synchronize()
    assert t.launch_names == ["relu_forward_v2"]
    rec = t.launches[0]
    assert rec.grid == (1, 1, 1) and rec.block == (256, 1, 1) and rec.shared_mem == 0
    assert rec.pointers[:2] == (xd.data.ptr, y.data.ptr) and rec.args[2] == np.int64(x.size)
    assert t.uploads == 1 and t.downloads == 1 and t.syncs == 1
    assert t.allocations >= 2 and t.allocated_bytes >= 2 * x.nbytes
    assert s == pytest.approx(np.maximum(x, 0).sum(), rel=1e-6)


def test_no_execute_mode_records_without_running(cp, rng):
    xd = cp.asarray(rng.standard_normal(100).astype(np.float32))
    with emu.trace(execute=False) as t:
        y = ops.sigmoid_forward(xd)
    assert t.launch_names == ["sigmoid_forward_v2"]
    assert np.isnan(y.get()).all(), "a recorded launch must not run"


def test_graph_capture_records_and_replays(cp, rng):
    x = rng.standard_normal(64).astype(np.float32)
    xd = cp.asarray(x)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream, emu.trace() as t:
        stream.begin_capture()
        y = ops.tanh_forward(xd)
        with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="capturing"):
            y.get()
        graph = stream.end_capture()
        assert np.isnan(y.view(np.ndarray)).all(), "a captured launch must not run before the graph is launched"
        graph.launch(stream)
    assert t.launch_names == ["tanh_forward_v2"]
    assert_close(y, np.tanh(x.astype(np.float64)), 1e-5, "replayed tanh")
    xd[...] = cp.asarray(-x)
    graph.launch(stream)
    assert_close(y, np.tanh(-x.astype(np.float64)), 1e-5, "second replay reads the new input")


def test_writes_while_capturing_are_captured(cp):
    """CuPy's fill and assignment are kernels: while a stream captures, the stand-in keeps them for
    the graph (each launch writes again, reading the source then), as a GPU does, instead of writing
    at once; outside a capture they write now. So a poisoned step's capture pass does not overwrite
    the eager pass's outputs."""
    a = cp.zeros(8, np.float32)
    a.fill(2.0)
    assert (a.get() == 2.0).all()
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        a.fill(np.nan)
        graph = stream.end_capture()
        assert (a.view(np.ndarray) == 2.0).all(), "a captured fill must not run before the graph is launched"
        graph.launch(stream)
        assert np.isnan(a.view(np.ndarray)).all()
        a.fill(5.0)
        graph.launch(stream)
        assert np.isnan(a.view(np.ndarray)).all()
        src, dst = cp.full(4, 1.0, np.float32), cp.zeros(8, np.float32)
        stream.begin_capture()
        dst[2:6] = src
        graph = stream.end_capture()
        assert (dst.view(np.ndarray) == 0).all(), "a captured assignment must not run before the graph is launched"
        src[...] = 7.0
        graph.launch(stream)
    assert dst.get().tolist() == [0, 0, 7, 7, 7, 7, 0, 0]


def test_event_times_the_host(cp):
    start, end = cp.cuda.Event(), cp.cuda.Event()
    with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="never recorded"):
        cp.cuda.get_elapsed_time(start, end)
    start.record()
    end.record()
    end.synchronize()
    assert 0 <= cp.cuda.get_elapsed_time(start, end) < 1e3
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        with pytest.raises(cp.cuda.runtime.CUDARuntimeError, match="capturing"):
            start.record(stream)
        stream.end_capture()


def test_memory_pool_limit_raises_out_of_memory(cp):
    pool = cp.get_default_memory_pool()
    pool.set_limit(size=pool.used_bytes() + 4096)
    try:
        with pytest.raises(cp.cuda.memory.OutOfMemoryError):
            cp.empty(4096, np.float32)
        free, total = cp.cuda.runtime.memGetInfo()
        assert free <= total
    finally:
        pool.set_limit(size=0)


def test_device_arrays_behave_like_cupy_arrays(cp):
    a = cp.arange(6, dtype=np.float32).reshape(2, 3)
    assert isinstance(a.sum(), cp.ndarray) and a.sum().ndim == 0
    assert isinstance(a[0, 1], cp.ndarray)
    assert a.data.ptr % 256 == 0 or not a.flags.owndata
    assert cp.empty(4, np.float32).get().view(np.uint32).tolist() == [0xFFFFFFFF] * 4
    assert a.device.id == 0 and cp.cuda.Device().attributes["MultiProcessorCount"] == 132


def test_fastconv_device_env_selects_the_stand_in(tmp_path):
    code = ("import numpy as np, fastconv.backend as b, fastconv.ops as ops\n"
            "cp = b.require_gpu()\n"
            "assert cp.__version__.endswith('fastconv.emu'), cp.__version__\n"
            "x = cp.asarray(np.array([-1.0, 2.0], np.float32))\n"
            "print(ops.relu_forward(x).get().tolist())\n")
    env = dict(os.environ, FASTCONV_DEVICE="emu")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[0.0, 2.0]"


def test_bad_fastconv_device_is_a_clear_error(monkeypatch):
    from fastconv import backend
    monkeypatch.setenv("FASTCONV_DEVICE", "gpu")
    with pytest.raises(ValueError, match=r"FASTCONV_DEVICE: got 'gpu', expected 'emu'"):
        backend.check_environment()


def test_cli_trains_and_evaluates_with_device_emu(tmp_path):
    """`fastconv train cnn --device emu` runs the CUDA C family on the CPU end to end (fresh process:
    the stand-in replaces cupy for the whole run)."""
    out = tmp_path / "run"
    tiny = ["--dataset", "fake", "--train-size", "64", "--batch-size", "32", "--channels", "4", "--hidden", "",
            "--test-batch-size", "64", "--epochs", "1", "--device", "emu"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")])))
    env.pop("FASTCONV_DATA", None)
    for args in (["train", "cnn", *tiny, "--out", str(out)],
                 ["eval", "--checkpoint", str(out / "checkpoint.safetensors"), "--device", "emu"]):
        proc = subprocess.run([sys.executable, "-m", "fastconv", *args], capture_output=True, text=True, env=env,
                              timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert 0.0 <= json.loads(proc.stdout.splitlines()[-1])["test_accuracy"] <= 1.0, proc.stdout


def test_creation_defaults_and_device_memory_size_are_cupys(cp):
    assert cp.ones(3).dtype == np.float64 and cp.zeros(2).dtype == np.float64 and cp.empty(1).dtype == np.float64
    with pytest.raises(cp.cuda.memory.OutOfMemoryError):
        cp.empty(1 << 50, np.float32)  # 4 PB: more than the 80 GB device
