"""The divergence guard: a NaN loss, or a non-finite value about to be saved, stops the run with
exit status 3 and keeps the last good checkpoint, in every trainer."""

import numpy as np
import pytest

from fastconv import cli
from fastconv.checkpoint import load_checkpoint

from .helpers import TINY_CNN, TINY_GAN

@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # overflow on the way to the NaN is the point
@pytest.mark.parametrize("trainer,message", [(["cnn", *TINY_CNN], "training loss became"),
                                             (["gan", *TINY_GAN, "--model", "mlp"], "loss became")],
                         ids=["cnn", "gan"])
def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, capsys, trainer, message):
    out = str(tmp_path / "n")
    base = ["train", *trainer, "--device", "cpu", "--out", out]
    assert cli.main([*base, "--epochs", "1"]) == 0
    before = (tmp_path / "n" / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    assert cli.main([*base, "--epochs", "3", "--resume", "--lr", "1e30", "--allow-lr-change"]) == cli.EXIT_NONFINITE
    err = capsys.readouterr().err
    assert message in err and "last good checkpoint" in err
    assert (tmp_path / "n" / "checkpoint.safetensors").read_bytes() == before
    assert load_checkpoint(tmp_path / "n" / "checkpoint.safetensors")[1]["epoch"] == 1


def _all_finite(path):
    tensors, _ = load_checkpoint(path)
    return all(np.isfinite(a).all() for a in tensors.values() if a.dtype.kind == "f")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_dcgan_at_huge_lr_exits_3_and_saves_no_non_finite_value(tmp_path, capsys):
    """The losses stay finite here; the BatchNorm running variances do not: the guard on what is
    saved stops the run, and the checkpoint keeps the last good values."""
    out = tmp_path / "d"
    base = ["train", "gan", *TINY_GAN, "--model", "dcgan", "--width", "4", "--device", "cpu", "--out", str(out)]
    assert cli.main([*base, "--epochs", "1"]) == 0
    before = (out / "checkpoint.safetensors").read_bytes()
    capsys.readouterr()
    assert cli.main([*base, "--epochs", "3", "--resume", "--lr", "1e9", "--allow-lr-change"]) == cli.EXIT_NONFINITE
    err = capsys.readouterr().err
    assert "running_var has" in err and "non-finite" in err and "last good checkpoint" in err
    assert (out / "checkpoint.safetensors").read_bytes() == before and _all_finite(out / "checkpoint.safetensors")

    fresh = tmp_path / "f"
    assert cli.main([*base[:-1], str(fresh), "--epochs", "2", "--lr", "1e9"]) == cli.EXIT_NONFINITE
    assert "no checkpoint had been written yet" in capsys.readouterr().err
    assert not (fresh / "checkpoint.safetensors").exists()


@pytest.mark.parametrize("what, flags, poisoned", [
    ("cnn", TINY_CNN, "optim.velocity.0"),
    ("gan", TINY_GAN + ["--model", "mlp"], "optD.v.1"),
    ("gan", TINY_GAN + ["--model", "dcgan", "--width", "4"], "G.1.running_mean"),
])
def test_any_non_finite_saved_value_stops_every_trainer(tmp_path, capsys, monkeypatch, what, flags, poisoned):
    """One NaN in one optimizer state or buffer, whatever the losses say, stops the save."""
    from fastconv.train import run as run_mod
    out = tmp_path / "o"
    assert cli.main(["train", what, *flags, "--epochs", "1", "--device", "cpu", "--out", str(out)]) == 0
    before = (out / "checkpoint.safetensors").read_bytes()
    real_save = run_mod.Run.save

    def save(self, tensors, meta):
        tensors = dict(tensors)
        tensors[poisoned] = np.array(tensors[poisoned], copy=True)
        tensors[poisoned].flat[-1] = np.nan
        return real_save(self, tensors, meta)

    monkeypatch.setattr(run_mod.Run, "save", save)
    capsys.readouterr()
    assert cli.main(["train", what, *flags, "--epochs", "2", "--device", "cpu", "--out", str(out),
                     "--resume"]) == cli.EXIT_NONFINITE
    assert f"{poisoned} has 1 non-finite value(s)" in capsys.readouterr().err
    assert (out / "checkpoint.safetensors").read_bytes() == before
