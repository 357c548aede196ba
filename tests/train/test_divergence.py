"""The divergence guard: a NaN loss, or a non-finite value about to be saved, stops the run with
exit status 3 and keeps the last good checkpoint, in every trainer."""

import pytest

from fastconv import cli
from fastconv.checkpoint import load_checkpoint

from .helpers import TINY_CNN, TINY_GAN

@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to the NaN is the point
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "n")
    base = ["train", "cnn", *TINY_CNN, "--device", "cpu", "--out", out]
    assert cli.main([*base, "--epochs", "1"]) == 0
    before = (tmp_path / "n" / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    assert cli.main([*base, "--epochs", "3", "--resume", "--lr", "1e30", "--allow-lr-change"]) == cli.EXIT_NONFINITE
    err = capsys.readouterr().err
    assert "training loss became" in err and "last good checkpoint" in err
    assert (tmp_path / "n" / "checkpoint.safetensors").read_bytes() == before
    assert load_checkpoint(tmp_path / "n" / "checkpoint.safetensors")[1]["epoch"] == 1


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_gan_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys):
    out = str(tmp_path / "n")
    base = ["train", "gan", *TINY_GAN, "--model", "mlp", "--device", "cpu", "--out", out]
    assert cli.main([*base, "--epochs", "1"]) == 0
    before = (tmp_path / "n" / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    assert cli.main([*base, "--epochs", "3", "--resume", "--lr", "1e30", "--allow-lr-change"]) == cli.EXIT_NONFINITE
    err = capsys.readouterr().err
    assert "loss became" in err and "last good checkpoint" in err
    assert (tmp_path / "n" / "checkpoint.safetensors").read_bytes() == before
    assert load_checkpoint(tmp_path / "n" / "checkpoint.safetensors")[1]["epoch"] == 1
