"""Progress without a terminal: plain lines (step, loss, img/s, ETA) at most every N seconds."""

import re
import subprocess
import sys

from fastconv.train.progress import LineProgress, progress

from .helpers import ROOT, TINY_CNN, TINY_GAN, env

LINE = re.compile(r"^epoch 1/1: step (\d+)/(\d+)(, [^,]+)*, (\d+) img/s, ETA \d+:\d\d$")


def test_line_progress_says_step_loss_rate_and_eta(capsys, monkeypatch):
    clock = iter(range(100))
    monkeypatch.setattr("fastconv.train.progress.time.monotonic", lambda: float(next(clock)))
    bar = LineProgress(total=400, desc="epoch 2/5", per_step=100, seconds=2)  # t0 = 0
    bar.set_postfix(loss="0.5000")
    for _ in range(4):
        bar.update(100)  # at t = 1, 2, 3, 4 s: a line at 2 s; none at 4 s (the epoch is done)
    assert capsys.readouterr().out.splitlines() == ["epoch 2/5: step 2/4, loss 0.5000, 100 img/s, ETA 0:02"]


def test_progress_is_lines_off_a_terminal_and_off_when_asked():
    assert isinstance(progress(10, "x", None), LineProgress)  # pytest's stdout is no terminal
    assert not isinstance(progress(10, "x", False), LineProgress)


def test_piped_cli_prints_progress_lines_for_both_trainers(tmp_path):
    # 3 CNN steps, 4 GAN iterations: a line after every step but the last (the epoch line follows)
    runs = (("cnn", TINY_CNN, 3), ("gan", TINY_GAN + ["--model", "mlp"], 4))
    for what, flags, steps in runs:
        cmd = [sys.executable, "-m", "fastconv", "train", what, *flags, "--log-every", "1", "--epochs", "1",
               "--device", "cpu", "--progress-seconds", "0", "--out", str(tmp_path / what)]
        r = subprocess.run(cmd, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        lines = [m for m in map(LINE.match, r.stdout.splitlines()) if m]
        assert [int(m.group(1)) for m in lines] == list(range(1, steps)), r.stdout
        assert {m.group(2) for m in lines} == {str(steps)}
        assert all((", loss " if what == "cnn" else ", D ") in m.group(0) for m in lines)
