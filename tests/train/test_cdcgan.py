"""The conditional DCGAN through the command line: training, bitwise resume, class grids, scoring."""

import json
import os

import numpy as np

from fastconv import cli, score
from fastconv.checkpoint import load_checkpoint

from .helpers import TINY_GAN, same_checkpoints

SAMPLE = os.path.join(os.path.dirname(score.__file__), "data", "sample")
FLAGS = TINY_GAN + ["--model", "cdcgan", "--width", "4", "--nz", "8", "--device", "cpu"]


def test_cdcgan_resume_is_bitwise_exact(tmp_path):
    assert cli.main(["train", "gan", *FLAGS, "--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["train", "gan", *FLAGS, "--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert cli.main(["train", "gan", *FLAGS, "--epochs", "2", "--out", str(tmp_path / "b"), "--resume"]) == 0
    meta = same_checkpoints(tmp_path / "a" / "checkpoint.safetensors", tmp_path / "b" / "checkpoint.safetensors")
    assert meta["iter"] == 8 and meta["arch"]["model"] == "cdcgan"
    assert (tmp_path / "a" / "samples.png").read_bytes() == (tmp_path / "b" / "samples.png").read_bytes()
    tensors, _ = load_checkpoint(tmp_path / "a" / "checkpoint.safetensors")
    assert {"G.embed.weight", "D.project.embed.weight"} <= set(tensors)


def test_cdcgan_grid_has_one_labelled_row_per_class(tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "g"
    assert cli.main(["train", "gan", *FLAGS, "--epochs", "1", "--out", str(out)]) == 0
    ckpt = str(out / "checkpoint.safetensors")
    grid = tmp_path / "grid.png"
    assert cli.main(["sample", "--checkpoint", ckpt, "--output", str(grid), "--device", "cpu"]) == 0
    assert "10 rows, one per class" in capsys.readouterr().out
    img = np.asarray(Image.open(grid))
    plain = tmp_path / "plain.png"
    assert cli.main(["sample", "--checkpoint", ckpt, "--output", str(plain), "--device", "cpu", "--class", "3",
                     "--num", "10"]) == 0
    one = np.asarray(Image.open(plain))
    assert img.shape[0] > 9 * one.shape[0]  # ten rows against one
    assert img[:, :40].max() > img[:, :40].min()  # the label margin holds text


def test_sample_class_errors(tmp_path, capsys):
    out = tmp_path / "d"
    assert cli.main(["train", "gan", *TINY_GAN, "--model", "dcgan", "--width", "4", "--epochs", "1", "--device",
                     "cpu", "--out", str(out)]) == 0
    args = ["sample", "--checkpoint", str(out / "checkpoint.safetensors"), "--output", str(tmp_path / "x.png"),
            "--device", "cpu", "--class", "2"]
    assert cli.main(args) == cli.EXIT_ERROR
    assert "class: got 2 for a 'dcgan' checkpoint, expected a conditional model" in capsys.readouterr().err
    out2 = tmp_path / "c"
    assert cli.main(["train", "gan", *FLAGS, "--epochs", "1", "--out", str(out2)]) == 0
    args = ["sample", "--checkpoint", str(out2 / "checkpoint.safetensors"), "--output", str(tmp_path / "y.png"),
            "--device", "cpu", "--class", "10"]
    assert cli.main(args) == cli.EXIT_ERROR
    assert "class: got 10, expected a class in 0..9" in capsys.readouterr().err


def test_score_command_prints_references_and_label_fidelity(tmp_path, capsys):
    out = tmp_path / "s"
    assert cli.main(["train", "gan", "--model", "cdcgan", "--width", "4", "--nz", "8", "--device", "cpu",
                     "--data-dir", SAMPLE, "--train-size", "64", "--batch-size", "16", "--iterations", "2",
                     "--out", str(out)]) == 0
    capsys.readouterr()
    assert cli.main(["score", "--checkpoint", str(out / "checkpoint.safetensors"), "--n", "300", "--data-dir",
                     SAMPLE, "--json", str(tmp_path / "score.json")]) == 0
    text = capsys.readouterr().out
    assert "reference, real test images" in text and "untrained generator" in text and "Trouser" in text
    result = json.loads((tmp_path / "score.json").read_text())
    assert result["n"] == 300 and len(result["label_fidelity"]) == 10
    assert result["real_vs_real"] < result["fd"] and result["real_vs_real"] < result["untrained_fd"]
    assert cli.main(["score", "--checkpoint", str(out / "checkpoint.safetensors"), "--n", "5000", "--data-dir",
                     SAMPLE]) == cli.EXIT_ERROR
    assert "n: got 5000, expected an int in [2, 1000]" in capsys.readouterr().err
