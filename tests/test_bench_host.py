"""benchmarks/bench_host.py on the CPU layer (fastconv.emu): every row runs (no op fails its call),
one line per row with its launch count, the raw launches replay what the op launched, and the
stand-in's settings (execute, fill) are restored afterwards."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_host  # noqa: E402
from backends import NO_GXX  # noqa: E402

import fastconv.emu as emu  # noqa: E402

pytestmark = NO_GXX


def test_every_row_runs_and_settings_come_back(capsys):
    assert bench_host.main(["--calls", "4", "--chunk", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["op", "launches", "us/call", "raw", "us", "beyond", "raw"]
    rows = {line[:34].strip(): line[34:].split() for line in lines[1:]}
    assert "not run" not in " ".join(lines), lines
    assert len(rows) == 46
    # conv2 (5x5) by Winograd: input and filter transforms, the products' GEMM, the output transform
    assert rows["adam_update fc1.w int step"][0] == "1" and rows["conv2d_forward conv2"][0] == "4"
    for name, (launches, *times) in rows.items():
        assert int(launches) >= 1 and all(float(t) > 0 for t in times[:2]), (name, times)
    assert emu.SETTINGS.execute and emu.SETTINGS.fill

