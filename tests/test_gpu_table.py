"""The CPU-side logic of benchmarks/gpu_table.py (it runs on a GPU later): the timing helpers of
benchmarks/timing.py (graph capture and replay exercised on the CPU layer, fastconv.emu), the
results file and its stamp, the bandwidth byte counts and the table printers."""

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import gpu_bandwidth  # noqa: E402
import gpu_table  # noqa: E402
import timing  # noqa: E402
from backends import NO_GXX  # noqa: E402

import fastconv.emu as emu  # noqa: E402
from fastconv import ops  # noqa: E402


class FakeClock:
    def __init__(self, times):
        self.times, self.calls = list(times), 0

    def time_ms(self, fn):
        fn()
        self.calls += 1
        return self.times.pop(0)


def test_median_ms_runs_warmup_untimed_then_takes_the_median():
    ran = []
    clock = FakeClock([5.0, 1.0, 3.0])
    assert timing.median_ms(clock, lambda: ran.append(1), reps=3, warmup=2) == 3.0
    assert len(ran) == 5 and clock.calls == 3
    with pytest.raises(ValueError, match="reps, warmup: got 0, 1"):
        timing.median_ms(clock, lambda: None, 0, 1)


def test_wall_times_s_times_runs_of_calls_with_or_without_the_sync(monkeypatch):
    """bench_step.py counts the closing sync (device work), bench_numba_launch.py does not (host
    launch cost only); on a fake clock a call takes 1 ms and a sync 1 s."""
    import types
    now, log = [0.0], []

    def fn():
        now[0] += 1e-3
        log.append("call")

    def sync():
        now[0] += 1.0
        log.append("sync")
    monkeypatch.setattr(timing, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    assert timing.wall_times_s(fn, 3, reps=2, warmup=1, sync=sync) == pytest.approx([1.003, 1.003])
    assert log == ["call", "sync"] + ["call"] * 3 + ["sync"] + ["call"] * 3 + ["sync"]
    assert timing.wall_times_s(fn, 3, 2, 0, sync, sync_timed=False) == pytest.approx([0.003, 0.003])


@NO_GXX
def test_graph_of_calls_replays_every_launch_on_the_cpu_layer():
    """20 relu calls captured into one graph: 20 launches recorded (not run), 20 distinct outputs
    kept alive; a replay writes them all; kernel_ms divides a replay by the call count."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1000).astype(np.float32)
    with emu.activate() as cp:
        xd = cp.asarray(x)
        g = timing.CupyGraph(cp, lambda: ops.relu_forward(xd))
        assert len(g.graph.launches) == timing.CALLS
        assert len({id(a) for a in g.keep}) == timing.CALLS
        for a in g.keep:
            a.fill(np.nan)
        g.replay()
        for a in g.keep:
            np.testing.assert_array_equal(cp.asnumpy(a), np.maximum(x, 0))
        assert timing.kernel_ms(timing.HostClock(), g, reps=2, warmup=1) > 0


def test_time_both_reports_a_failed_capture_and_keeps_the_per_call_time():
    def no_graph(fn):
        raise RuntimeError("cudaErrorStreamCaptureUnsupported: a sync\nmore")
    t = timing.time_both(FakeClock([2.0, 4.0, 6.0]), no_graph, lambda: None, reps=3, warmup=0)
    assert t.per_call_ms == 4.0 and t.kernel_ms is None
    assert t.note == "no graph: RuntimeError: cudaErrorStreamCaptureUnsupported: a sync"


@NO_GXX
def test_time_both_on_the_cpu_layer():
    with emu.activate() as cp:
        xd = cp.asarray(np.ones(64, np.float32))
        t = timing.time_both(timing.HostClock(), lambda f: timing.CupyGraph(cp, f, calls=3),
                             lambda: ops.tanh_forward(xd), reps=2, warmup=0)
    assert t.per_call_ms > 0 and t.kernel_ms > 0 and not t.note


def test_results_file_is_stamped_and_round_trips(tmp_path):
    r = timing.stamp("Test Card", 13000, tmp_path, {"reps": 3})  # tmp_path is no git checkout
    assert r.commit == "unknown" and r.card == "Test Card" and r.driver
    r.add("bandwidth", op="activation.relu.forward", fastconv=timing.Timing(1.0, 0.5), gbs=np.float64(2.0))
    out = json.loads(r.write(tmp_path / "t.json").read_text())
    assert out["card"] == "Test Card" and out["settings"] == {"reps": 3}
    assert out["rows"] == [{"table": "bandwidth", "op": "activation.relu.forward",
                            "fastconv": {"per_call_ms": 1.0, "kernel_ms": 0.5, "note": ""}, "gbs": 2.0}]
    assert not (tmp_path / "t.json.tmp").exists()


def test_card_name_reads_the_current_device_as_text():
    with emu.activate() as cp:
        assert timing.card_name(cp) == "fastconv emu (CUDA C on the CPU)"


def test_stamp_names_the_commit_of_this_checkout():
    r = timing.stamp("c", 1, BENCH.parent, {})
    assert r.commit == "unknown" or len(r.commit.split("+")[0]) >= 7


def test_bandwidth_bytes():
    n = 2 * 3 * 4 * 4
    assert gpu_bandwidth.bytes_of("copy", (2, 3, 4, 4)) == 2 * n * 4
    assert gpu_bandwidth.bytes_of("fill", (2, 3, 4, 4)) == n * 4
    assert gpu_bandwidth.bytes_of("backward", (2, 3, 4, 4)) == 3 * n * 4
    assert gpu_bandwidth.bytes_of("max_pool2d.forward", (2, 3, 4, 4)) == n * 4 + n // 4 * 8
    assert gpu_bandwidth.bytes_of("conv2d_backward_bias", (2, 3, 4, 4)) == n * 4
    with pytest.raises(ValueError, match="op: got 'nope'"):
        gpu_bandwidth.bytes_of("nope")
    size = int(np.prod(gpu_bandwidth.BANDWIDTH_SHAPE)) * 4
    assert size >= 3 * 60e6  # several times the L2 of an H100 (50 MB) and an H200 (60 MB)


def test_printers_fill_the_results(capsys, tmp_path):
    r = timing.stamp("c", 1, tmp_path, {})
    T = timing.Timing
    gpu_table.print_bandwidth([("copy (ceiling)", "-", 800, T(2.0, 1.0), T(2.0, 1.25), True),
                               ("activation.relu.forward", "cupy", 800, T(3.0, 2.0), T(3.0, None, "no graph: x"),
                                True)], r)
    rows = [x for x in r.rows if x["table"] == "bandwidth"]
    assert rows[1]["of_copy"] == pytest.approx(0.5) and rows[1]["torch_gbs"] == pytest.approx(800 / 3.0 / 1e6)
    conv = [("lenet.conv1", "forward", {"cupy": (T(1.0, 0.5), True, 0.0)}, T(1.0, 0.25), {}),
            ("lenet.conv1", "backward_bias", {"cupy": (T(1.0, 0.1), True, 0.0)}, T(1.0, 0.2), {})]
    gpu_table.print_conv(conv, r, ["cupy"])
    gm = {x["kind"]: x["value"] for x in r.rows if x["table"] == "conv_geomean"}
    assert gm == {"kernel": pytest.approx(0.5), "per_call": pytest.approx(1.0)}  # bias row not in the 18
    out = capsys.readouterr().out
    assert "no graph: x" in out and "0.50" in out
    conv[0][2]["numba"] = (T(1.0, 0.8), True, 0.0)  # the numba family at 0.5 / 0.8 of the cupy family's speed
    conv[1][2]["numba"] = (T(1.0, 0.3), True, 0.0)  # a bias row: not among the 18
    gpu_table.print_conv(conv, r, ["cupy", "numba"])
    assert "fastconv-numba speed / fastconv-cupy speed over 1 conv rows, kernel: 0.625 (target >= 0.6)" in \
        capsys.readouterr().out


def _printed(conv_table, row) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        conv_table.print_table([row], "card")
    return out.getvalue()


def test_conv_table_lists_cudnn_kernels_by_name():
    """conv_table keeps the GPU activities of a profiled cuDNN call (not its CPU ops) and prints
    them per row without template arguments."""
    import conv_table
    DeviceType = pytest.importorskip("torch.autograd").DeviceType

    class Event:
        def __init__(self, name, device_type):
            self.name, self.device_type = name, device_type

    events = [Event("aten::conv2d", DeviceType.CPU), Event("Memset (Device)", DeviceType.CUDA),
              Event("fft2d_r2c_32x32<float, false, 1u>(float2*, float const*)", DeviceType.CUDA)]
    names = conv_table.kernel_names(events)
    assert names == ["Memset (Device)", "fft2d_r2c_32x32<float, false, 1u>(float2*, float const*)"]
    assert conv_table.short(names[1]) == "fft2d_r2c_32x32"
    assert conv_table.short("k" * 100, width=10) == "kkkkkkk..."
    row = {"row": "lenet.conv2 backward_weight"}
    for prec, t in (("fp32", 0.2), ("tf32", 0.1)):
        row.update({f"{prec} ok": True, f"{prec} call ms": t, f"{prec} cudnn call ms": 0.1,
                    f"{prec} kernel ms": t, f"{prec} cudnn kernel ms": 0.1})
    row["fp32 cudnn kernels"] = names
    text = _printed(conv_table, row)
    assert "lenet.conv2 backward_weight Memset, fft2d_r2c_32x32 | -" in text
    assert "fp32 kernel-only 0.50" in text and "TF32 kernel-only 1.00" in text
    assert "with 4-byte gathers: 1.00" in text  # a row without that timing keeps its own
    assert "with the sweep's picks" not in text
    gathers = dict(row, **{"tf32 4-byte kernel ms": 0.2})
    text = _printed(conv_table, gathers)
    assert "TF32 kernel-only 1.00 (target >= 1.0; with 4-byte gathers: 0.50)" in text
    assert next(ln for ln in text.splitlines() if ln.startswith("lenet.conv2 backward_weight")).split()[-2:] == \
        ["1.00", "0.50"]   # the default's tf32 ratio, then the 4-byte one
    row.update({"fp32 picked": {"conv_tile": "t64x32", "conv_splits": 4}, "fp32 picked kernel ms": 0.05,
                "tf32 picked": {"conv_tile": "t64x64", "conv_splits": None}})
    text = _printed(conv_table, row)
    assert "fp32  0.50 -> 2.00  {'conv_tile': 't64x32', 'conv_splits': 4}" in text and "tf32  1.00 -> INVALID" in text
    assert "with the picks: fp32 kernel-only 2.00 (lenet/dcgan minimum 2.00), TF32 kernel-only 1.00" in text
    assert "geometric means tuned: fp32 kernel-only nan" in text   # a table without tuned timings
    row.update({"fp32 tuned pick": [{}], "fp32 tuned kernel ms": 0.25, "tf32 tuned pick": [{"conv_tile": "winograd"}],
                "tf32 tuned kernel ms": 0.05})
    text = _printed(conv_table, row)
    assert "fp32  0.50 -> 0.40  [{}]" in text and "tf32  1.00 -> 2.00  [{'conv_tile': 'winograd'}]" in text
    assert "geometric means tuned: fp32 kernel-only 0.40 (lenet/dcgan minimum 0.40), TF32 kernel-only 2.00" in text


def test_fill_case_writes_its_value_on_both_sides():
    torch = pytest.importorskip("torch")
    with emu.activate() as cp:  # torch.from_dlpack of the CPU layer's arrays: CPU tensors
        nbytes, fill, torch_fill, check = gpu_bandwidth.fill_case(cp, torch, (2, 3, 4, 4))
        assert nbytes == 2 * 3 * 4 * 4 * 4 and check()
        assert bool((torch_fill() == 1.5).all())


@NO_GXX
def test_pool_cases_run_every_kernel_forced():
    """Each pooling case names the pool_variant settings of its pass, and each, forced, runs its own
    kernel (on the CPU layer) and gives the launcher's pick's result."""
    import fastconv
    torch = pytest.importorskip("torch")
    fwd, bwd = ("2x2", "2x2w", "general"), ("2x2", "2x2w", "2x2v4x2", "2x2r", "general")
    assert (gpu_bandwidth.pool_variants("forward"), gpu_bandwidth.pool_variants("backward")) == (fwd, bwd)
    with emu.activate() as cp, fastconv.using(poison=True):
        cases = [c for c in gpu_bandwidth.cases(cp, torch, np.random.default_rng(0), (2, 3, 6, 16))
                 if c.name.startswith("pool.")]
        assert [c.variants for c in cases] == [fwd, bwd, fwd, bwd]
        for case in cases:
            want = cp.asnumpy(case.fastconv("cupy"))
            for variant in case.variants:
                with fastconv.using(pool_variant=variant), emu.trace() as t:
                    got = cp.asnumpy(case.fastconv("cupy"))
                suffix = "_v2" if variant == "general" else f"_v3_{variant}"
                assert [n for n in t.launch_names if n.endswith(suffix)], (case.name, variant, t.launch_names)
                np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"{case.name} {variant}")
