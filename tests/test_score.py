"""The Fréchet distance, label fidelity and the shipped scorer.

The distance is checked against a direct float64 computation that shares nothing with
fastconv.score's symmetric route: tr sqrt(S1 S2) from the (real, non-negative) eigenvalues of
the non-symmetric product S1 @ S2 (np.linalg.eigvals), and against the closed form for diagonal
covariances. The scorer is checked against its recorded SHA-256 and accuracy, its features
against PyTorch running the same weights, and its distance against images that must score far
apart: real test images against real training images, noise and an untrained generator.
"""

import json
import os
import shutil

import numpy as np
import pytest

from fastconv import score
from fastconv.checkpoint import CheckpointError
from fastconv.data import load_dataset, to_float
from fastconv.testing import assert_close


def direct_frechet(f1, f2):
    """float64: mean/covariance by explicit sums, tr sqrt(S1 S2) from eigvals of the product."""
    f1, f2 = np.asarray(f1, np.float64), np.asarray(f2, np.float64)
    stats = []
    for f in (f1, f2):
        mu = f.sum(axis=0) / len(f)
        cov = np.zeros((f.shape[1], f.shape[1]))
        for row in f:
            cov += np.outer(row - mu, row - mu)
        stats.append((mu, cov / (len(f) - 1)))
    (mu1, s1), (mu2, s2) = stats
    ev = np.linalg.eigvals(s1 @ s2)
    assert np.abs(ev.imag).max() <= 1e-8 * np.abs(ev).max()
    tr_sqrt = np.sqrt(np.clip(ev.real, 0, None)).sum()
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


@pytest.mark.parametrize("n,d,seed", [(50, 4, 0), (200, 16, 1), (40, 8, 2)])
def test_frechet_matches_direct_float64(n, d, seed):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((d, d))
    f1 = rng.standard_normal((n, d)) @ mix + rng.standard_normal(d)
    f2 = rng.standard_normal((n + 7, d)) @ (mix + 0.5 * rng.standard_normal((d, d))) + 2 * rng.standard_normal(d)
    got = score.frechet_distance_of(f1, f2)
    want = direct_frechet(f1, f2)
    assert want > 1.0
    assert abs(got - want) <= 1e-8 * want
    assert abs(score.frechet_distance_of(f2, f1) - got) <= 1e-8 * got  # symmetric


def test_frechet_closed_form_for_diagonal_covariances():
    rng = np.random.default_rng(3)
    a, b = rng.uniform(0.1, 3, 6), rng.uniform(0.1, 3, 6)
    mu1, mu2 = rng.standard_normal(6), rng.standard_normal(6)
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = score.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
    assert abs(got - want) <= 1e-12 * want


def test_frechet_of_a_set_with_itself_is_zero_even_when_singular():
    rng = np.random.default_rng(4)
    f = rng.standard_normal((5, 12))  # rank-4 covariance in 12 dimensions
    assert 0.0 <= score.frechet_distance_of(f, f) <= 1e-9


def test_feature_stats_are_the_unbiased_mean_and_covariance():
    f = np.random.default_rng(5).standard_normal((30, 3))
    mu, cov = score.feature_stats(f)
    assert_close(mu, f.mean(axis=0), 1e-14)
    assert_close(cov, np.cov(f, rowvar=False), 1e-12)


@pytest.mark.parametrize("args,match", [
    ((np.zeros(3), np.eye(3), np.zeros(2), np.eye(2)), "mu2: got shape"),
    ((np.zeros(3), np.eye(3), np.zeros(3), np.ones((3, 2))), "cov2: got shape"),
    ((np.zeros(3), np.triu(np.ones((3, 3))), np.zeros(3), np.eye(3)), "cov1: got a non-symmetric"),
    ((np.array([0, np.nan, 0]), np.eye(3), np.zeros(3), np.eye(3)), "mu1: got NaN"),
])
def test_frechet_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        score.frechet_distance(*args)


def test_feature_stats_bad_input():
    with pytest.raises(ValueError, match=r"features: got shape \(1, 3\)"):
        score.feature_stats(np.zeros((1, 3)))
    with pytest.raises(ValueError, match="features: got NaN"):
        score.feature_stats(np.array([[0.0, 1.0], [np.inf, 0.0]]))


def test_label_fidelity_against_a_loop():
    rng = np.random.default_rng(6)
    requested = rng.integers(0, 9, 300)  # class 9 never requested
    predicted = np.where(rng.random(300) < 0.7, requested, rng.integers(0, 10, 300))
    got = score.label_fidelity(predicted, requested)
    for c in range(9):
        sel = requested == c
        assert got[c] == pytest.approx(np.mean(predicted[sel] == c), abs=1e-15)
    assert np.isnan(got[9])
    with pytest.raises(ValueError, match="predicted: got shape"):
        score.label_fidelity(predicted[:5], requested)


# ---------------------------------------------------------------------------------------------
# the shipped scorer

@pytest.fixture(scope="module")
def scorer():
    return score.load_scorer("fashion-mnist")


@pytest.fixture(scope="module")
def sample():
    return load_dataset("fashion-mnist", os.path.join(os.path.dirname(score.__file__), "data", "sample"))


def test_shipped_scorer_record(scorer):
    path, record_path = score.scorer_paths("fashion-mnist")
    assert os.path.getsize(path) < 1_000_000
    with open(record_path) as f:
        record = json.load(f)
    assert record["sha256"] == score._sha256(path)
    assert record["test_accuracy"] >= 0.89 and record["seed"] == 0
    assert sum(int(p.data.size) for p in scorer.model.parameters()) == 114314


def test_scorer_classifies_the_bundled_sample(scorer, sample):
    pred = scorer.predict(to_float(sample.test_images, "pm1"))
    assert np.mean(pred == sample.test_labels) >= 0.85


def test_scorer_features_match_torch(scorer, sample):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x = to_float(sample.test_images[:64], "01")
    st = {k: torch.tensor(np.asarray(v, np.float64)) for k, v in scorer.model.state_dict().items()}
    h = torch.tensor(x.astype(np.float64))
    for i in (0, 3):
        h = F.max_pool2d(F.relu(F.conv2d(h, st[f"{i}.weight"], st[f"{i}.bias"], padding=2)), 2)
    h = F.relu(F.linear(h.flatten(1), st["7.weight"], st["7.bias"]))
    feats, pred = scorer.run(x * 2 - 1)
    assert_close(feats, h.numpy(), 1e-5, "scorer features")
    assert np.array_equal(pred, F.linear(h, st["9.weight"], st["9.bias"]).argmax(1).numpy())


def test_distance_grows_far_above_real_for_noise_and_an_untrained_generator(scorer, sample):
    from fastconv.train.gan import build_dcgan, generate, noise

    real_train = score.real_features(scorer, sample.train_images, 1000)
    real_test = score.real_features(scorer, sample.test_images, 1000)
    real_vs_real = score.frechet_distance_of(real_train, real_test)
    rng = np.random.default_rng(7)
    noise_images = rng.uniform(-1, 1, (1000, 1, 28, 28)).astype(np.float32)
    noise_fd = score.frechet_distance_of(real_train, scorer.features(noise_images))
    G, _ = build_dcgan(100, 8, rng=np.random.default_rng(0))
    untrained, _ = score.generated_features(scorer, lambda m: generate(G, noise(rng, m, 100)), 1000)
    untrained_fd = score.frechet_distance_of(real_train, untrained)
    assert real_vs_real < 5.0
    assert noise_fd > 20 * real_vs_real and untrained_fd > 20 * real_vs_real


def test_scorer_refuses_a_changed_file(tmp_path, monkeypatch):
    for name in os.listdir(score.SCORER_DIR):
        shutil.copy(os.path.join(score.SCORER_DIR, name), tmp_path / name)
    monkeypatch.setattr(score, "SCORER_DIR", str(tmp_path))
    assert score.load_scorer("fashion-mnist").dataset == "fashion-mnist"
    blob = bytearray((tmp_path / "fashion-mnist.safetensors").read_bytes())
    blob[-5] ^= 1
    (tmp_path / "fashion-mnist.safetensors").write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match="has SHA-256 .* expected"):
        score.load_scorer("fashion-mnist")
    with pytest.raises(CheckpointError, match="no scorer shipped for 'mnist'; expected one of \\['fashion-mnist'\\]"):
        score.load_scorer("mnist")


def test_scorer_bad_images(scorer):
    with pytest.raises(ValueError, match=r"images: got shape \(2, 28, 28\)"):
        scorer.features(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(ValueError, match="n: got 1"):
        score.generated_features(scorer, lambda m: np.zeros((m, 1, 28, 28), np.float32), 1)


def test_score_generator_conditional_requests_every_class_equally(scorer, sample):
    from fastconv.train.cdcgan import build_cdcgan

    G, _ = build_cdcgan(nz=8, width=4, rng=np.random.default_rng(0))
    real = score.real_features(scorer, sample.train_images, 200)
    rng = np.random.default_rng(1)
    sample_fn = score.sampler(G.eval(), 8, rng)
    _, a = sample_fn(7)
    _, b = sample_fn(13)
    assert np.array_equal(np.concatenate([a, b]), np.arange(20) % 10)
    out = score.score_generator(G, 8, scorer, real, 200, np.random.default_rng(2), batch_size=64)
    fid = out["label_fidelity"]
    assert fid.shape == (10,) and np.all((fid >= 0) & (fid <= 1)) and out["fd"] > 0
    # the same classifier calls, counted by hand
    images, labels = score.sampler(G, 8, np.random.default_rng(2))(200)
    want = score.label_fidelity(scorer.predict(images), labels)
    assert np.array_equal(fid, want)
