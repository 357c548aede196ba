"""GPU trainers against the CPU: the same seed gives the same first steps (within float32 rounding).

Run on the GPU machine: ``python -m pytest tests/gpu/test_train_gpu.py -q``. Skipped without a GPU.
"""

import json

import numpy as np
import pytest

from fastconv import cli
from fastconv.checkpoint import load_checkpoint
from fastconv.testing import rel_error
from fastconv.train.gan import build_gan

pytestmark = pytest.mark.gpu

FAMILIES = ["cupy", "numba"]
CNN = ["train", "cnn", "--dataset", "fake", "--train-size", "128", "--batch-size", "32", "--epochs", "1",
       "--test-batch-size", "64", "--log-every", "2"]
GAN = ["train", "gan", "--model", "dcgan", "--dataset", "fake", "--train-size", "96", "--batch-size", "32",
       "--width", "16", "--epochs", "1", "--sample-every", "2", "--n-samples", "16", "--log-every", "1"]


def _run(args, out, device, kernels=None):
    argv = [*args, "--device", device, "--out", str(out)] + (["--kernels", kernels] if kernels else [])
    assert cli.main(argv) == 0
    return load_checkpoint(out / "checkpoint.safetensors")


def _initial_lenet():
    """The weights the CNN run starts from, rebuilt as the trainer builds them (default LeNet, seed 0)."""
    from fastconv.train.cnn import build_cnn
    return build_cnn([32, 64], [256], 5, (1, 28, 28), rng=np.random.default_rng(0)).state_dict()


@pytest.mark.parametrize("kernels", FAMILIES)
def test_cnn_first_steps_match_cpu(tmp_path, kernels):
    t_cpu, m_cpu = _run(CNN, tmp_path / "cpu", "cpu")
    t_gpu, m_gpu = _run(CNN, tmp_path / "gpu", "cuda", kernels)
    assert m_gpu["step"] == m_cpu["step"] == 4 and m_gpu["rng"] == m_cpu["rng"]
    init = _initial_lenet()
    for name, w0 in init.items():
        key = "model." + name
        # compare the change the 4 SGD steps made, not the weights (which hide it). Not at 1e-6: a
        # pre-activation within fp32 rounding of zero may take a different ReLU side on the two
        # paths (both within rounding of float64; seen: one of 401,408 conv2 outputs at step 3,
        # +5.7e-8 in float64 against 3.5 of summed |terms|), which moves this update by up to
        # 2.5e-3; a wrong kernel moves it by O(1).
        err = rel_error(t_gpu[key].astype(np.float64) - w0, t_cpu[key].astype(np.float64) - w0)
        assert err <= 1e-2, f"{key}: relative error of the update {err:.2e}"
    h_cpu, h_gpu = m_cpu["history"], m_gpu["history"]
    assert abs(h_gpu["train_loss"][0] - h_cpu["train_loss"][0]) <= 1e-4 * abs(h_cpu["train_loss"][0])
    assert abs(h_gpu["test_accuracy"][0] - h_cpu["test_accuracy"][0]) <= 2 / 64  # near-ties may flip


@pytest.mark.parametrize("kernels", FAMILIES)
def test_dcgan_first_iterations_match_cpu(tmp_path, kernels):
    t_cpu, m_cpu = _run(GAN, tmp_path / "cpu", "cpu")
    t_gpu, m_gpu = _run(GAN, tmp_path / "gpu", "cuda", kernels)
    assert m_gpu["iter"] == m_cpu["iter"] == 3 and m_gpu["rng"] == m_cpu["rng"]
    for k in ("history.d_loss", "history.g_loss", "history.d_x", "history.d_g_z"):
        assert rel_error(t_gpu[k], t_cpu[k]) <= 1e-3, k
    G0, D0 = build_gan(m_cpu["arch"], rng=np.random.default_rng(0))  # the weights both runs start from
    init = {**{"G." + k: v for k, v in G0.state_dict().items()}, **{"D." + k: v for k, v in D0.state_dict().items()}}
    for key, w0 in init.items():
        if np.asarray(w0).dtype.kind != "f":
            continue
        # compare the change the 3 Adam steps made (the weights would hide it), in L2. Adam moves each
        # weight by about lr whatever its gradient's size, so a bias gradient that is a sum of
        # cancelling terms carries the other path's rounding into its step (seen on an H100, Numba
        # family: one of D.0.bias's 16 entries 1 % off, 3.1e-3 in L2); a wrong kernel moves it by O(1).
        w0 = np.asarray(w0, dtype=np.float64)
        err = rel_error(t_gpu[key].astype(np.float64) - w0, t_cpu[key].astype(np.float64) - w0)
        assert err <= 1e-2, f"{key}: relative error of the update {err:.2e}"
    lines = [json.loads(s) for s in (tmp_path / "gpu" / "metrics.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["d_loss"]) for r in lines if r["kind"] == "train")
    assert (tmp_path / "gpu" / "samples.png").is_file()


def test_eval_and_sample_on_gpu(tmp_path, capsys):
    _run(CNN, tmp_path / "c", "cpu")
    ckpt = str(tmp_path / "c" / "checkpoint.safetensors")
    accs = []
    for device in ("cpu", "cuda"):
        capsys.readouterr()
        assert cli.main(["eval", "--checkpoint", ckpt, "--device", device]) == 0
        accs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["test_accuracy"])
    assert abs(accs[0] - accs[1]) <= 2 / 128

    _run(GAN, tmp_path / "g", "cuda")
    png = tmp_path / "s.png"
    assert cli.main(["sample", "--checkpoint", str(tmp_path / "g" / "checkpoint.safetensors"), "--device", "cuda",
                     "--num", "16", "--output", str(png)]) == 0
    assert png.is_file()


def test_cuda_resume_continues(tmp_path):
    _run(CNN, tmp_path / "r", "cuda")
    args = list(CNN)
    args[args.index("--epochs") + 1] = "2"
    assert cli.main([*args, "--device", "cuda", "--out", str(tmp_path / "r"), "--resume"]) == 0
    _, meta = load_checkpoint(tmp_path / "r" / "checkpoint.safetensors")
    assert meta["epoch"] == 2 and meta["step"] == 8
