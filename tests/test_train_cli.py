"""Trainers through the CLI on fake data: dry runs, damaged checkpoints, bad flags, optional packages."""

import json
import subprocess
import sys

import numpy as np
import pytest

from fastconv import cli
from fastconv.backend import gpu_available
from fastconv.checkpoint import load_checkpoint

from train.helpers import env, read_lines


# ---------------------------------------------------------------------------------------------
# dry runs

def test_cnn_dry_run_writes_everything(tmp_path, capsys):
    out = tmp_path / "cnn"
    assert cli.main(["train", "cnn", "--dry-run", "--device", "cpu", "--out", str(out)]) == 0
    for name in ("checkpoint.safetensors", "metrics.jsonl", "results.json", "loss.png", "accuracy.png"):
        assert (out / name).is_file(), name
    epochs = [r for r in read_lines(out / "metrics.jsonl") if r["kind"] == "epoch"]
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
    rec = [r for r in read_lines(out / "metrics.jsonl") if r["kind"] == "train"][-1]
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
                        "--out", str(out)], cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "mean D(x)" in r.stdout and (out / "samples.png").is_file()
    r = subprocess.run([sys.executable, "-m", "fastconv", "train", "cnn", "--help"], cwd=tmp_path, env=env(),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "--batch-size" in r.stdout and "(default: 128)" in r.stdout


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


@pytest.mark.parametrize("flags, needle", [
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


@pytest.mark.parametrize("what, flags, needle", [
    ("cnn", ["--epochs", "0"], "argument --epochs: got 0, expected a positive int"),
    ("cnn", ["--epochs", "-2"], "argument --epochs: got -2, expected a positive int"),
    ("cnn", ["--batch-size", "-3"], "argument --batch-size: got -3, expected a positive int"),
    ("cnn", ["--lr", "-0.1"], "argument --lr: got '-0.1', expected a positive finite number"),
    ("cnn", ["--lr", "nan"], "argument --lr: got 'nan', expected a positive finite number"),
    ("cnn", ["--weight-decay", "-0.001"], "argument --weight-decay: got '-0.001', expected a finite number >= 0"),
    ("cnn", ["--weight-decay=-1e-4"], "argument --weight-decay: got '-1e-4', expected a finite number >= 0"),
    ("cnn", ["--momentum", "-0.5"], "argument --momentum: got '-0.5', expected a finite number >= 0"),
    ("gan", ["--iterations", "0"], "argument --iterations: got 0, expected a positive int"),
    ("gan", ["--d-steps", "x"], "argument --d-steps: got 'x', expected a positive int"),
])
def test_negative_or_zero_flags_rejected_by_argparse(capsys, what, flags, needle):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", what, "--dry-run", "--device", "cpu", *flags])
    assert e.value.code == 2
    assert needle in capsys.readouterr().err


def test_trainer_api_rejects_negative_weight_decay(tmp_path):
    from fastconv.train import CNNConfig, train_cnn
    with pytest.raises(ValueError, match="weight_decay: got -0.1, expected a finite number >= 0"):
        train_cnn(CNNConfig(dry_run=True, device="cpu", out=str(tmp_path), weight_decay=-0.1))


def test_sample_bad_nrow_and_unwritable_output(tmp_path, capsys):
    assert cli.main(["train", "gan", "--model", "mlp", "--dry-run", "--device", "cpu", "--out", str(tmp_path)]) == 0
    ckpt = str(tmp_path / "checkpoint.safetensors")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["sample", "--checkpoint", ckpt, "--nrow", "-1"])
    assert "argument --nrow: got -1, expected a positive int" in capsys.readouterr().err
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    bad = str(blocker / "sub" / "grid.png")  # a directory below a plain file: cannot be created, even by root
    assert cli.main(["sample", "--checkpoint", ckpt, "--output", bad, "--device", "cpu"]) == cli.EXIT_ERROR
    err = capsys.readouterr().err
    assert f"output: got {bad!r}, whose directory cannot be written" in err
    assert cli.main(["sample", "--checkpoint", ckpt, "--output", str(tmp_path), "--device", "cpu"]) == cli.EXIT_ERROR
    assert f"output: got {str(tmp_path)!r}, which is a directory" in capsys.readouterr().err


def test_save_grid_rejects_bad_nrow(tmp_path):
    from fastconv.train.images import save_grid
    with pytest.raises(ValueError, match="nrow: got -1, expected a positive int"):
        save_grid(np.zeros((4, 1, 8, 8)), str(tmp_path / "g.png"), nrow=-1)


@pytest.mark.parametrize("what", ["cnn", "gan"])
def test_unwritable_out_names_the_flag_before_training(tmp_path, capsys, what):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    bad = str(blocker / "run")
    assert cli.main(["train", what, "--dry-run", "--device", "cpu", "--out", bad]) == cli.EXIT_ERROR
    captured = capsys.readouterr()
    assert f"out: got {bad!r}, which cannot be written" in captured.err
    assert "data:" not in captured.out  # nothing was loaded or trained first


@pytest.mark.parametrize("module, name", [("safetensors", "safetensors"), ("PIL", "Pillow")])
@pytest.mark.parametrize("what", ["cnn", "gan"])
def test_missing_optional_package_is_reported_before_training(tmp_path, capsys, monkeypatch, module, name, what):
    for mod in list(sys.modules):
        if mod == module or mod.startswith(module + "."):
            monkeypatch.setitem(sys.modules, mod, None)
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    out = tmp_path / "o"
    assert cli.main(["train", what, "--dry-run", "--device", "cpu", "--out", str(out)]) == cli.EXIT_ERROR
    assert name in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists() and not (out / "checkpoint.safetensors").exists()


def test_sample_without_pillow_fails_before_generating(tmp_path, capsys, monkeypatch):
    assert cli.main(["train", "gan", "--model", "mlp", "--dry-run", "--device", "cpu", "--out", str(tmp_path)]) == 0
    import fastconv.train.gan as gan_mod
    called = []
    monkeypatch.setattr(gan_mod, "generator_from_checkpoint", lambda *a, **k: called.append(1))
    for mod in [m for m in sys.modules if m == "PIL" or m.startswith("PIL.")]:
        monkeypatch.setitem(sys.modules, mod, None)
    capsys.readouterr()
    assert cli.main(["sample", "--checkpoint", str(tmp_path / "checkpoint.safetensors"), "--device", "cpu",
                     "--output", str(tmp_path / "s.png")]) == cli.EXIT_ERROR
    assert "Pillow" in capsys.readouterr().err and not called


# ---------------------------------------------------------------------------------------------
# device fallback, minimax loss, GAN NaN, the default networks

def test_device_auto_falls_back_to_cpu_and_says_so_once(tmp_path, capsys, monkeypatch):
    from fastconv import backend
    from fastconv.train import common
    monkeypatch.setattr(backend, "gpu_available", lambda: False)
    monkeypatch.setattr(common, "_fallback_said", False)
    assert cli.main(["train", "cnn", "--dry-run", "--device", "auto", "--out", str(tmp_path / "c")]) == 0
    assert cli.main(["train", "gan", "--dry-run", "--out", str(tmp_path / "g")]) == 0  # auto is the default
    assert cli.main(["eval", "--checkpoint", str(tmp_path / "c" / "checkpoint.safetensors")]) == 0
    out = capsys.readouterr().out
    assert out.count("device auto: no usable CUDA GPU") == 1
    assert json.loads((tmp_path / "c" / "results.json").read_text())["device"] == "cpu"
    assert json.loads((tmp_path / "g" / "results.json").read_text())["device"] == "cpu"


def test_gan_minimax_runs_and_differs_from_nonsat(tmp_path):
    recs = {}
    for loss in ("nonsat", "minimax"):
        out = tmp_path / loss
        assert cli.main(["train", "gan", "--model", "mlp", "--dry-run", "--device", "cpu", "--g-loss", loss,
                         "--log-every", "1", "--out", str(out)]) == 0
        recs[loss] = [r for r in read_lines(out / "metrics.jsonl") if r["kind"] == "train"]
        assert load_checkpoint(out / "checkpoint.safetensors")[1]["config"]["g_loss"] == loss
    n, m = recs["nonsat"][0], recs["minimax"][0]
    assert n["d_loss"] == m["d_loss"] and n["d_g_z2"] == m["d_g_z2"]  # iteration 1: the same D step and D(G(z))
    p = m["d_g_z2"]  # log(1 - D) versus -log D of (about) the same mean D(G(z))
    assert m["g_loss"] < 0 < n["g_loss"]
    assert m["g_loss"] == pytest.approx(np.log(1 - p), abs=0.05) and n["g_loss"] == pytest.approx(-np.log(p), abs=0.05)
    assert recs["nonsat"][1]["g_loss"] != recs["minimax"][1]["g_loss"]


def test_lenet_and_dcgan_match_design():
    from fastconv import nn
    from fastconv.train import build_cnn, build_dcgan

    def count(m):
        return sum(int(p.data.size) for p in m.parameters())

    lenet = build_cnn(rng=np.random.default_rng(0))
    mods = list(lenet)
    assert [type(m).__name__ for m in mods] == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d",
                                                "Flatten", "Linear", "ReLU", "Linear"]
    assert (mods[0].weight.data.shape, mods[3].weight.data.shape) == ((32, 1, 5, 5), (64, 32, 5, 5))
    assert (mods[7].weight.data.size, mods[9].weight.data.size) == (3136 * 256, 256 * 10)
    assert count(lenet) == 857_738

    G, D = build_dcgan(rng=np.random.default_rng(0))
    assert [type(m).__name__ for m in G] == ["Linear", "BatchNorm1d", "ReLU", "Unflatten", "ConvTranspose2d",
                                             "BatchNorm2d", "ReLU", "ConvTranspose2d", "Tanh"]
    assert [type(m).__name__ for m in D] == ["Conv2d", "LeakyReLU", "Conv2d", "BatchNorm2d", "LeakyReLU",
                                             "Flatten", "Linear"]
    assert count(G) == 771_969 and count(D) == 138_689
    weighted = [m for m in list(G) + list(D) if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))]
    assert len(weighted) == 6
    for m in weighted:  # DCGAN init: N(0, 0.02)
        w = m.weight.data
        assert abs(float(w.std()) - 0.02) < 0.1 * 0.02 and abs(float(w.mean())) < 0.004, type(m).__name__
        if getattr(m, "bias", None) is not None:
            assert not np.any(m.bias.data)
    for m in list(G) + list(D):
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            assert abs(float(m.weight.data.mean()) - 1.0) < 0.01 and not np.any(m.bias.data)
    assert [m.negative_slope for m in D if isinstance(m, nn.LeakyReLU)] == [0.2, 0.2]
