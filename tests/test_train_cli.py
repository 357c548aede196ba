"""Trainers through the CLI on fake data: dry runs, exact resume, SIGKILL, damaged checkpoints, NaN loss."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from fastconv import cli
from fastconv.backend import gpu_available
from fastconv.checkpoint import load_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_CNN = ["--dataset", "fake", "--train-size", "96", "--batch-size", "32", "--channels", "4,8", "--hidden", "16",
            "--test-batch-size", "64"]
TINY_GAN = ["--dataset", "fake", "--train-size", "64", "--batch-size", "16", "--sample-every", "2", "--n-samples", "9"]


def _env():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("FASTCONV_DATA", None)
    return env


def _lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def _same_checkpoints(a, b):
    ta, ma = load_checkpoint(a)
    tb, mb = load_checkpoint(b)
    assert sorted(ta) == sorted(tb)
    for k in ta:
        assert ta[k].dtype == tb[k].dtype and ta[k].shape == tb[k].shape, k
        assert ta[k].tobytes() == tb[k].tobytes(), f"{k} differs"
    assert ma["rng"] == mb["rng"] and ma["epoch"] == mb["epoch"]
    return ma


# ---------------------------------------------------------------------------------------------
# dry runs

def test_cnn_dry_run_writes_everything(tmp_path, capsys):
    out = tmp_path / "cnn"
    assert cli.main(["train", "cnn", "--dry-run", "--device", "cpu", "--out", str(out)]) == 0
    for name in ("checkpoint.safetensors", "metrics.jsonl", "results.json", "loss.png", "accuracy.png"):
        assert (out / name).is_file(), name
    epochs = [r for r in _lines(out / "metrics.jsonl") if r["kind"] == "epoch"]
    assert len(epochs) == 1 and 0.0 <= epochs[0]["test_accuracy"] <= 1.0
    tensors, meta = load_checkpoint(out / "checkpoint.safetensors", kind="cnn")
    assert meta["epoch"] == 1 and meta["step"] == 2 and "model.0.weight" in tensors and "optim.steps" in tensors
    assert "test accuracy" in capsys.readouterr().out

    assert cli.main(["eval", "--checkpoint", str(out / "checkpoint.safetensors"), "--device", "cpu"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["epoch"] == 1 and 0.0 <= report["test_accuracy"] <= 1.0


@pytest.mark.parametrize("model", ["mlp", "dcgan"])
def test_gan_dry_run_writes_everything_and_samples(tmp_path, capsys, model):
    from PIL import Image

    out = tmp_path / model
    assert cli.main(["train", "gan", "--model", model, "--dry-run", "--device", "cpu", "--out", str(out)]) == 0
    for name in ("checkpoint.safetensors", "metrics.jsonl", "results.json", "samples.png", "losses.png",
                 "d_outputs.png", "samples/iter_000001.png", "samples/iter_000002.png"):
        assert (out / name).is_file(), name
    rec = [r for r in _lines(out / "metrics.jsonl") if r["kind"] == "train"][-1]
    for k in ("d_loss", "g_loss", "d_x", "d_g_z1", "d_g_z2"):
        assert np.isfinite(rec[k])
    assert 0.0 < rec["d_x"] < 1.0 and 0.0 < rec["d_g_z1"] < 1.0

    png = tmp_path / "s.png"
    args = ["sample", "--checkpoint", str(out / "checkpoint.safetensors"), "--num", "6", "--nrow", "3",
            "--seed", "5", "--output", str(png), "--device", "cpu"]
    assert cli.main(args) == 0
    first = png.read_bytes()
    assert Image.open(png).size == (2 * (2 + 3 * 30), 2 * (2 + 2 * 30))  # 3x2 tiles of 28+2 px, drawn at 2x
    assert cli.main(args) == 0 and png.read_bytes() == first  # seeded: the same grid again
    with pytest.raises(SystemExit):
        cli.main(["sample"])  # --checkpoint is required


def test_real_subprocess_dry_run(tmp_path):
    out = tmp_path / "gan"
    r = subprocess.run([sys.executable, "-m", "fastconv", "train", "gan", "--model", "dcgan", "--dry-run",
                        "--out", str(out)], cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "mean D(x)" in r.stdout and (out / "samples.png").is_file()
    r = subprocess.run([sys.executable, "-m", "fastconv", "train", "cnn", "--help"], cwd=tmp_path, env=_env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--batch-size" in r.stdout and "(default: 128)" in r.stdout


# ---------------------------------------------------------------------------------------------
# resume

@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_cnn_resume_is_bitwise_exact(tmp_path, opt):
    flags = TINY_CNN + ["--optimizer", opt, "--lr", "0.01" if opt == "adam" else "0.05", "--device", "cpu",
                        "--log-every", "2"]
    assert cli.main(["train", "cnn", *flags, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["train", "cnn", *flags, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert cli.main(["train", "cnn", *flags, "--epochs", "2", "--out", str(tmp_path / "b"), "--resume"]) == 0
    meta = _same_checkpoints(tmp_path / "a" / "checkpoint.safetensors", tmp_path / "b" / "checkpoint.safetensors")
    assert meta["epoch"] == 2 and meta["step"] == 6
    assert [r["epoch"] for r in _lines(tmp_path / "b" / "metrics.jsonl") if r["kind"] == "epoch"] == [1, 2]


def test_gan_resume_is_bitwise_exact(tmp_path):
    flags = TINY_GAN + ["--model", "dcgan", "--width", "4", "--device", "cpu", "--d-steps", "2"]
    assert cli.main(["train", "gan", *flags, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["train", "gan", *flags, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert cli.main(["train", "gan", *flags, "--epochs", "2", "--out", str(tmp_path / "b"),
                     "--resume", str(tmp_path / "b" / "checkpoint.safetensors")]) == 0
    meta = _same_checkpoints(tmp_path / "a" / "checkpoint.safetensors", tmp_path / "b" / "checkpoint.safetensors")
    assert meta["iter"] == 4
    assert (tmp_path / "a" / "samples.png").read_bytes() == (tmp_path / "b" / "samples.png").read_bytes()


def test_resume_with_other_architecture_is_clear_error(tmp_path, capsys):
    out = str(tmp_path / "c")
    assert cli.main(["train", "cnn", *TINY_CNN, "--epochs", "1", "--device", "cpu", "--out", out]) == 0
    args = ["train", "cnn", *TINY_CNN, "--epochs", "2", "--device", "cpu", "--out", out, "--resume"]
    args[args.index("4,8")] = "4,16"
    assert cli.main(args) == cli.EXIT_ERROR
    assert "architecture" in capsys.readouterr().err


def test_sigkill_mid_training_leaves_loadable_checkpoint(tmp_path):
    out = tmp_path / "k"
    ckpt = out / "checkpoint.safetensors"
    cmd = [sys.executable, "-m", "fastconv", "train", "cnn", *TINY_CNN, "--epochs", "10000", "--device", "cpu",
           "--out", str(out)]
    p = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and p.poll() is None:
            if ckpt.exists() and load_checkpoint(ckpt)[1]["epoch"] >= 2:
                break
            time.sleep(0.02)
        assert p.poll() is None, p.stderr.read().decode()
        time.sleep(0.05)  # land somewhere inside an epoch or a checkpoint write
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
    assert p.returncode == -signal.SIGKILL
    _, meta = load_checkpoint(ckpt, kind="cnn")
    done = meta["epoch"]
    assert done >= 2
    assert cli.main(["train", "cnn", *TINY_CNN, "--epochs", str(done + 1), "--device", "cpu", "--out", str(out),
                     "--resume"]) == 0
    assert load_checkpoint(ckpt)[1]["epoch"] == done + 1


# ---------------------------------------------------------------------------------------------
# errors

def test_corrupt_checkpoint_is_clear_error(tmp_path, capsys):
    out = tmp_path / "c"
    assert cli.main(["train", "cnn", "--dry-run", "--device", "cpu", "--out", str(out)]) == 0
    ckpt = out / "checkpoint.safetensors"
    blob = bytearray(ckpt.read_bytes())
    ckpt.write_bytes(bytes(blob[: len(blob) // 2]))
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(ckpt), "--device", "cpu"]) == cli.EXIT_ERROR
    assert "truncated or corrupt" in capsys.readouterr().err
    assert cli.main(["train", "cnn", "--dry-run", "--device", "cpu", "--out", str(out), "--resume"]) == cli.EXIT_ERROR
    assert "truncated or corrupt" in capsys.readouterr().err
    assert cli.main(["sample", "--checkpoint", str(tmp_path / "none.safetensors")]) == cli.EXIT_ERROR
    assert "does not exist" in capsys.readouterr().err


def test_gan_checkpoint_for_eval_is_clear_error(tmp_path, capsys):
    assert cli.main(["train", "gan", "--dry-run", "--device", "cpu", "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "checkpoint.safetensors")]) == cli.EXIT_ERROR
    assert "expected a 'cnn' one" in capsys.readouterr().err


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to the NaN is the point
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "n")
    base = ["train", "cnn", *TINY_CNN, "--device", "cpu", "--out", out]
    assert cli.main([*base, "--epochs", "1"]) == 0
    before = (tmp_path / "n" / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    assert cli.main([*base, "--epochs", "3", "--resume", "--lr", "1e30"]) == cli.EXIT_NONFINITE
    err = capsys.readouterr().err
    assert "training loss became" in err and "last good checkpoint" in err
    assert (tmp_path / "n" / "checkpoint.safetensors").read_bytes() == before
    assert load_checkpoint(tmp_path / "n" / "checkpoint.safetensors")[1]["epoch"] == 1


@pytest.mark.parametrize("flags, needle", [
    (["--epochs", "0"], "epochs: got 0"),
    (["--batch-size", "-3"], "batch_size: got -3"),
    (["--lr", "nan"], "lr: got nan"),
    (["--channels", "32,x"], "channels: got '32,x'"),
    (["--kernel-size", "4"], "kernel_size: got 4"),
])
def test_bad_flags_name_argument_and_value(tmp_path, capsys, flags, needle):
    assert cli.main(["train", "cnn", "--dry-run", "--device", "cpu", "--out", str(tmp_path), *flags]) == cli.EXIT_ERROR
    assert needle in capsys.readouterr().err


def test_missing_data_says_how_to_get_it(tmp_path, capsys):
    assert cli.main(["train", "cnn", "--dataset", "mnist", "--data-dir", str(tmp_path), "--device", "cpu",
                     "--out", str(tmp_path / "o")]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert "data_dir" in err and "train-images-idx3-ubyte" in err


@pytest.mark.skipif(gpu_available(), reason="a usable GPU is present")
def test_device_cuda_without_gpu_is_clear_error(tmp_path, capsys):
    assert cli.main(["train", "cnn", "--dry-run", "--device", "cuda", "--out", str(tmp_path)]) == cli.EXIT_ERROR
    assert "device: 'cuda' asked for" in capsys.readouterr().err


def test_check_is_delegated_lazily(monkeypatch):
    import types
    seen = []
    fake = types.ModuleType("fastconv.check")
    fake.main = lambda argv: seen.append(list(argv)) or 7
    monkeypatch.setitem(sys.modules, "fastconv.check", fake)
    assert cli.main(["check", "--quick", "-k", "conv"]) == 7
    assert seen == [["--quick", "-k", "conv"]]
