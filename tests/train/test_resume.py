"""Resume: bitwise-exact continuation, the must-match checks, SIGKILL and a kill before the rename."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fastconv import cli
from fastconv.checkpoint import load_checkpoint

from .helpers import ROOT, TINY_CNN, TINY_GAN, env, read_lines, same_checkpoints, wait_for_epoch

# ---------------------------------------------------------------------------------------------
# resume

@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_cnn_resume_is_bitwise_exact(tmp_path, opt):
    flags = TINY_CNN + ["--optimizer", opt, "--lr", "0.01" if opt == "adam" else "0.05", "--device", "cpu",
                        "--log-every", "2"]
    assert cli.main(["train", "cnn", *flags, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["train", "cnn", *flags, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert cli.main(["train", "cnn", *flags, "--epochs", "2", "--out", str(tmp_path / "b"), "--resume"]) == 0
    meta = same_checkpoints(tmp_path / "a" / "checkpoint.safetensors", tmp_path / "b" / "checkpoint.safetensors")
    assert meta["epoch"] == 2 and meta["step"] == 6
    assert [r["epoch"] for r in read_lines(tmp_path / "b" / "metrics.jsonl") if r["kind"] == "epoch"] == [1, 2]


def test_gan_resume_is_bitwise_exact(tmp_path):
    flags = TINY_GAN + ["--model", "dcgan", "--width", "4", "--device", "cpu", "--d-steps", "2"]
    assert cli.main(["train", "gan", *flags, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["train", "gan", *flags, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert cli.main(["train", "gan", *flags, "--epochs", "2", "--out", str(tmp_path / "b"),
                     "--resume", str(tmp_path / "b" / "checkpoint.safetensors")]) == 0
    meta = same_checkpoints(tmp_path / "a" / "checkpoint.safetensors", tmp_path / "b" / "checkpoint.safetensors")
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
    p = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_epoch(p, ckpt)
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
# resume must continue the same run

@pytest.mark.parametrize("flag, value, old", [
    ("--batch-size", "16", "32"), ("--seed", "1", "0"), ("--train-size", "64", "96"), ("--momentum", "0.5", "0.9"),
    ("--lr", "0.01", "0.05"), ("--optimizer", "adam", "'sgd'"), ("--weight-decay", "0.001", "0.0"),
])
def test_cnn_resume_with_other_settings_is_clear_error(tmp_path, capsys, flag, value, old):
    out = str(tmp_path / "c")
    assert cli.main(["train", "cnn", *TINY_CNN, "--epochs", "1", "--device", "cpu", "--out", out]) == 0
    before = (tmp_path / "c" / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    args = ["train", "cnn", *TINY_CNN, "--epochs", "2", "--device", "cpu", "--out", out, "--resume"]
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    assert cli.main(args) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert f"{flag}: got " in err and f"was trained with {old}" in err and "only --epochs" in err
    assert (tmp_path / "c" / "checkpoint.safetensors").read_bytes() == before


@pytest.mark.parametrize("flag, value", [("--d-steps", "2"), ("--g-loss", "minimax"), ("--beta1", "0.9"),
                                         ("--lr", "1e-3"), ("--batch-size", "8")])
def test_gan_resume_with_other_settings_is_clear_error(tmp_path, capsys, flag, value):
    out = str(tmp_path / "g")
    base = ["train", "gan", *TINY_GAN, "--model", "mlp", "--device", "cpu", "--out", out]
    assert cli.main([*base, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert cli.main([*base, "--epochs", "2", "--resume", flag, value]) == cli.EXIT_ERROR
    assert f"{flag}: got " in capsys.readouterr().err
    assert cli.main([*base, "--epochs", "2", "--resume"]) == 0  # only --epochs differs: fine


def test_resume_on_other_training_set_is_clear_error(tmp_path, monkeypatch):
    """--train-size unchanged (None) but the data behind it differs (another --data-dir): the image
    count is compared, and other images of the same count are caught by the data's SHA-256."""
    from fastconv.train import CNNConfig, train_cnn
    from fastconv.train import cnn as cnn_mod
    cfg = dict(dataset="mnist", channels="4", hidden="", batch_size=64, device="cpu", out=str(tmp_path))
    monkeypatch.setattr(cnn_mod, "load_dataset", lambda name, d=None: cnn_mod.fake_dataset(train=128, test=64))
    train_cnn(CNNConfig(epochs=1, **cfg))
    before = (tmp_path / "checkpoint.safetensors").read_bytes()
    monkeypatch.setattr(cnn_mod, "load_dataset", lambda name, d=None: cnn_mod.fake_dataset(train=256, test=64))
    with pytest.raises(ValueError, match="--train-size/--data-dir: got 256 training images, but the checkpoint"):
        train_cnn(CNNConfig(epochs=2, resume=True, **cfg))
    monkeypatch.setattr(cnn_mod, "load_dataset", lambda name, d=None: cnn_mod.fake_dataset(train=128, test=64,
                                                                                            seed=1))
    with pytest.raises(ValueError, match="--data-dir/--dataset: the training images and labels have SHA-256"):
        train_cnn(CNNConfig(epochs=2, resume=True, **cfg))
    assert (tmp_path / "checkpoint.safetensors").read_bytes() == before
    monkeypatch.setattr(cnn_mod, "load_dataset", lambda name, d=None: cnn_mod.fake_dataset(train=128, test=64))
    assert train_cnn(CNNConfig(epochs=2, resume=True, **cfg))["epochs"] == 2


def test_checkpoint_missing_resume_key_is_clear_error(tmp_path, capsys):
    from fastconv.checkpoint import save_checkpoint
    out = tmp_path / "c"
    assert cli.main(["train", "cnn", *TINY_CNN, "--epochs", "1", "--device", "cpu", "--out", str(out)]) == 0
    ckpt = out / "checkpoint.safetensors"
    tensors, meta = load_checkpoint(ckpt)
    del meta["rng"], meta["format"]
    save_checkpoint(ckpt, tensors, meta)  # a valid file whose metadata lacks a key the trainer reads
    capsys.readouterr()
    assert cli.main(["train", "cnn", *TINY_CNN, "--epochs", "2", "--device", "cpu", "--out", str(out),
                     "--resume"]) == cli.EXIT_ERROR
    assert f"{str(ckpt)!r} has no metadata key 'rng'" in capsys.readouterr().err
    del meta["arch"]["in_shape"]
    save_checkpoint(ckpt, tensors, meta)
    assert cli.main(["eval", "--checkpoint", str(ckpt), "--device", "cpu"]) == cli.EXIT_ERROR
    assert "has no metadata key 'arch.in_shape'" in capsys.readouterr().err


def test_gan_iterations_stop_mid_epoch_and_resume_exactly(tmp_path, capsys):
    # 4 iterations per epoch; a log line (and history point) every iteration, so that the extra
    # line a stop writes does not make the logged history differ from an uninterrupted run's
    flags = TINY_GAN + ["--model", "dcgan", "--width", "4", "--device", "cpu", "--log-every", "1"]
    assert cli.main(["train", "gan", *flags, "--iterations", "6", "--out", str(tmp_path / "a")]) == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["iter"] == 6 and res["epochs_completed"] == 1 and res["epoch_iter"] == 2
    assert (tmp_path / "a" / "samples.png").is_file() and (tmp_path / "a" / "samples" / "iter_000006.png").is_file()
    assert "stopped at --iterations 6, 2/4 iterations into epoch 2" in capsys.readouterr().out
    # 3 iterations (stops inside epoch 1), then resume up to 6: the same weights, RNG and grid
    assert cli.main(["train", "gan", *flags, "--iterations", "3", "--out", str(tmp_path / "b")]) == 0
    assert load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")[1]["epoch_iter"] == 3
    assert cli.main(["train", "gan", *flags, "--iterations", "6", "--out", str(tmp_path / "b"), "--resume"]) == 0
    meta = same_checkpoints(tmp_path / "a" / "checkpoint.safetensors", tmp_path / "b" / "checkpoint.safetensors")
    assert meta["iter"] == 6 and meta["epoch_iter"] == 2
    assert (tmp_path / "a" / "samples.png").read_bytes() == (tmp_path / "b" / "samples.png").read_bytes()
    # a run stopped by --iterations continues by epochs as well: 2 full epochs = 8 iterations
    assert cli.main(["train", "gan", *flags, "--epochs", "2", "--out", str(tmp_path / "c")]) == 0
    assert cli.main(["train", "gan", *flags, "--epochs", "2", "--out", str(tmp_path / "a"), "--resume"]) == 0
    meta = same_checkpoints(tmp_path / "a" / "checkpoint.safetensors", tmp_path / "c" / "checkpoint.safetensors")
    assert meta["iter"] == 8 and meta["epoch_iter"] == 0 and meta["epoch"] == 2


def test_kill_between_checkpoint_write_and_rename_keeps_previous(tmp_path):
    """Deterministic stand-in for the SIGKILL test: the process dies (os._exit) right before the
    os.replace of its 2nd checkpoint; the 1st still loads and resumes, and the stale temp goes."""
    out = tmp_path / "k"
    code = ("import os, sys\n"
            "real, n = os.replace, [0]\n"
            "def replace(src, dst):\n"
            "    if os.path.basename(dst) == 'checkpoint.safetensors':\n"
            "        n[0] += 1\n"
            "        if n[0] == 2:\n"
            "            os._exit(137)\n"
            "    return real(src, dst)\n"
            "os.replace = replace\n"
            "from fastconv import cli\n"
            "sys.exit(cli.main(sys.argv[1:]))\n")
    args = ["train", "cnn", *TINY_CNN, "--epochs", "3", "--device", "cpu", "--out", str(out)]
    r = subprocess.run([sys.executable, "-c", code, *args], cwd=tmp_path, env=env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 137, r.stderr
    stale = [n for n in os.listdir(out) if n.startswith(".checkpoint.safetensors.") and n.endswith(".tmp")]
    assert len(stale) == 1
    assert load_checkpoint(out / "checkpoint.safetensors", kind="cnn")[1]["epoch"] == 1
    assert cli.main(["train", "cnn", *TINY_CNN, "--epochs", "2", "--device", "cpu", "--out", str(out),
                     "--resume"]) == 0
    assert load_checkpoint(out / "checkpoint.safetensors")[1]["epoch"] == 2
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]
