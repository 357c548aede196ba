"""The stronger classifier recipe's options of `fastconv train cnn`: --batchnorm, --dropout,
--augment and the learning-rate --schedule; each resumes bitwise like the plain recipe."""

import shutil

import numpy as np
import pytest

import fastconv.nn as nn
from fastconv import cli, emu
from fastconv.checkpoint import load_checkpoint
from fastconv.train.cnn import CNNConfig, arch_of, build_cnn

from .helpers import TINY_CNN, same_checkpoints

RECIPE = ["--batchnorm", "--dropout", "0.3", "--augment", "--schedule", "step", "--lr-step", "1", "--lr-gamma", "0.5"]


def test_builder_places_batchnorm_and_dropout():
    plain = [type(m).__name__ for m in build_cnn((4, 8), (16,), rng=np.random.default_rng(0)).layers]
    model = build_cnn((4, 8), (16,), rng=np.random.default_rng(0), batchnorm=True, dropout=0.25)
    names = [type(m).__name__ for m in model.layers]
    assert names == ["Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d",
                     "Flatten", "Linear", "BatchNorm1d", "ReLU", "Dropout", "Linear"]
    assert "BatchNorm2d" not in plain and "Dropout" not in plain
    assert model.layers[0].bias is None and model.layers[-1].bias is not None
    assert arch_of(CNNConfig(), (1, 28, 28)) == {"channels": [32, 64], "hidden": [256], "kernel_size": 5,
                                                  "in_shape": [1, 28, 28], "classes": 10}
    with pytest.raises(ValueError, match="dropout: got 1.0"):
        build_cnn((4,), (8,), dropout=1.0)
    assert isinstance(model.layers[12], nn.Dropout) and model.layers[12].p == 0.25


def test_recipe_resumes_bitwise_and_follows_the_schedule(tmp_path):
    flags = TINY_CNN + RECIPE + ["--device", "cpu", "--log-every", "2"]
    assert cli.main(["train", "cnn", *flags, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["train", "cnn", *flags, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert cli.main(["train", "cnn", *flags, "--epochs", "2", "--out", str(tmp_path / "b"), "--resume"]) == 0
    meta = same_checkpoints(tmp_path / "a" / "checkpoint.safetensors", tmp_path / "b" / "checkpoint.safetensors")
    assert meta["arch"]["batchnorm"] is True and meta["arch"]["dropout"] == 0.3
    tensors, _ = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    assert float(tensors["optim.lr"]) == pytest.approx(0.05 * 0.5)  # the last step of epoch 2: floor(1.67) = 1 decay


def test_augment_changes_training_and_is_seeded(tmp_path):
    base = TINY_CNN + ["--device", "cpu", "--epochs", "1"]
    for name, extra in (("plain", []), ("aug1", ["--augment"]), ("aug2", ["--augment"])):
        assert cli.main(["train", "cnn", *base, *extra, "--out", str(tmp_path / name)]) == 0
    w = {n: load_checkpoint(tmp_path / n / "checkpoint.safetensors")[0]["model.0.weight"] for n in ("plain", "aug1",
                                                                                                   "aug2")}
    assert np.array_equal(w["aug1"], w["aug2"]) and not np.array_equal(w["plain"], w["aug1"])


@pytest.mark.skipif(shutil.which("g++") is None, reason="fastconv.emu compiles the kernels with g++")
def test_augment_on_device_arrays_matches_the_cpu(tmp_path):
    """The batch comes back from the host augmentation to the device it came from (emu: device arrays)."""
    base = TINY_CNN + ["--epochs", "1", "--augment", "--kernels", "cupy"]
    with emu.activate():   # --device emu installs the stand-in for the process: gone again after the test
        for device in ("cpu", "emu"):
            assert cli.main(["train", "cnn", *base, "--device", device, "--out", str(tmp_path / device)]) == 0
    w = {d: load_checkpoint(tmp_path / d / "checkpoint.safetensors")[0]["model.0.weight"] for d in ("cpu", "emu")}
    assert np.isfinite(w["emu"]).all()
    np.testing.assert_allclose(w["emu"], w["cpu"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("flag,value,match", [("--schedule", "linear", "invalid choice: 'linear'"),
                                              ("--dropout", "1.5", "expected a number in [0, 1)"),
                                              ("--lr-gamma", "0", "expected a number in (0, 1)")])
def test_bad_recipe_flags(flag, value, match, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "cnn", *TINY_CNN, flag, value, "--dry-run"])
    assert e.value.code == 2 and match in capsys.readouterr().err
