"""Runs cannot clobber each other: a fresh run into a folder holding a checkpoint is refused,
--dry-run never writes into runs/<model>, and the folder is locked while a run lasts."""

import json
import os
import subprocess
import sys
import time

import pytest

from fastconv import cli
from fastconv.checkpoint import load_checkpoint

from .helpers import ROOT, TINY_CNN, TINY_GAN, env, read_lines

RUN_FILES = ("checkpoint.safetensors", "metrics.jsonl", "results.json", "loss.png", "accuracy.png")


def _snapshot(folder):
    return {name: (folder / name).read_bytes() for name in RUN_FILES}


def test_dry_run_after_a_real_run_leaves_it_byte_identical(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["train", "cnn", *TINY_CNN, "--epochs", "2", "--device", "cpu"]) == 0  # default --out
    real = tmp_path / "runs" / "cnn"
    before = _snapshot(real)
    capsys.readouterr()
    assert cli.main(["train", "cnn", "--dry-run", "--device", "cpu"]) == 0
    assert cli.main(["train", "gan", "--dry-run", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert _snapshot(real) == before
    assert sorted(os.listdir(tmp_path / "runs")) == ["cnn"]  # no runs/dcgan either
    dry = out.split("outputs in ")[1].split()[0]
    assert "fastconv-dry-run-cnn-" in dry and os.path.isfile(os.path.join(dry, "checkpoint.safetensors"))
    # a dry run pointed at the real run's folder is refused like any fresh run
    assert cli.main(["train", "cnn", "--dry-run", "--device", "cpu", "--out", str(real)]) == cli.EXIT_ERROR
    assert _snapshot(real) == before


def test_fresh_run_into_a_folder_with_a_checkpoint_is_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "c"
    base = ["train", "cnn", *TINY_CNN, "--device", "cpu", "--out", str(out)]
    assert cli.main([*base, "--epochs", "2"]) == 0
    before = _snapshot(out)
    capsys.readouterr()
    assert cli.main([*base, "--epochs", "1", "--seed", "1"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run's checkpoint" in err
    assert "--resume" in err and "a new --out" in err and "--overwrite" in err
    assert _snapshot(out) == before
    # resuming another folder's checkpoint into this one would replace this run too
    other = tmp_path / "other"
    assert cli.main(["train", "cnn", *TINY_CNN, "--device", "cpu", "--out", str(other), "--epochs", "1"]) == 0
    capsys.readouterr()
    assert cli.main([*base, "--epochs", "2", "--resume", str(other / "checkpoint.safetensors")]) == cli.EXIT_ERROR
    assert "already holds a run's checkpoint" in capsys.readouterr().err
    assert _snapshot(out) == before
    assert cli.main([*base, "--epochs", "1", "--seed", "1", "--overwrite"]) == 0
    _, meta = load_checkpoint(out / "checkpoint.safetensors")
    assert meta["epoch"] == 1 and meta["config"]["seed"] == 1
    assert [r["epoch"] for r in read_lines(out / "metrics.jsonl") if r["kind"] == "epoch"] == [1]


def test_run_that_fails_at_once_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "new"
    assert cli.main(["train", "cnn", "--dataset", "mnist", "--data-dir", str(tmp_path), "--device", "cpu",
                     "--out", str(out)]) == cli.EXIT_ERROR
    assert "data_dir" in capsys.readouterr().err
    assert not out.exists()
    existing = tmp_path / "mine"
    existing.mkdir()
    assert cli.main(["train", "cnn", "--dataset", "mnist", "--data-dir", str(tmp_path), "--device", "cpu",
                     "--out", str(existing)]) == cli.EXIT_ERROR
    assert existing.is_dir()  # a folder the user made stays


def test_train_size_above_the_data_is_an_error(tmp_path, capsys):
    assert cli.main(["train", "cnn", "--dataset", "fake", "--train-size", "513", "--device", "cpu",
                     "--out", str(tmp_path / "o")]) == cli.EXIT_ERROR
    assert "train_size: got 513, but the training set has 512 images; expected at most 512" in capsys.readouterr().err


@pytest.mark.parametrize("what, flags", [("cnn", TINY_CNN), ("gan", TINY_GAN + ["--model", "mlp"])])
def test_second_run_into_a_locked_folder_stops_and_the_first_completes(tmp_path, capsys, what, flags):
    out = tmp_path / "shared"
    epochs = 30
    cmd = [sys.executable, "-m", "fastconv", "train", what, *flags, "--epochs", str(epochs), "--device", "cpu",
           "--out", str(out)]
    first = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and first.poll() is None and not (out / "checkpoint.safetensors").exists():
            time.sleep(0.02)
        assert first.poll() is None, first.stderr.read().decode()
        for extra in (["--resume"], ["--overwrite"]):
            assert cli.main(["train", what, *flags, "--epochs", str(epochs), "--device", "cpu", "--out", str(out),
                             *extra]) == cli.EXIT_ERROR
            err = capsys.readouterr().err
            assert f"is in use by another fastconv run (PID {first.pid})" in err and err.count("\n") == 1
        assert first.wait(timeout=300) == 0, first.stderr.read().decode()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stderr.close()
    records = read_lines(out / "metrics.jsonl")  # every line whole JSON: nothing interleaved
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == list(range(1, epochs + 1))
    assert load_checkpoint(out / "checkpoint.safetensors")[1]["epoch"] == epochs
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
    assert json.loads((out / "results.json").read_text())["checkpoint"] == str(out / "checkpoint.safetensors")
    # the lock went with the process: the folder can be resumed now
    assert cli.main(["train", what, *flags, "--epochs", str(epochs + 1), "--device", "cpu", "--out", str(out),
                     "--resume"]) == 0
