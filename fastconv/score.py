"""Image-quality scores on the features of a fixed classifier that ships with the package.

The Fréchet distance between two sets of images is the Fréchet (2-Wasserstein) distance between
Gaussians fitted to their feature vectors (Heusel et al. 2017, "FID"):

    d^2 = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr( (S1^1/2 S2 S1^1/2)^1/2 )

The features are the 64 penultimate-layer activations (after ReLU) of a narrow LeNet trained on
the data set's training split by ``scripts/train_scorer.py`` with a fixed seed; its weights,
test accuracy and SHA-256 are in ``fastconv/data/scorer/``. The numbers are therefore comparable
between fastconv, PyTorch and any other generator scored here, but not with Inception-based FIDs.
Label fidelity, for a class-conditional generator, is the scorer's accuracy on images generated
for each requested class.
"""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np

from .backend import to_device
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint, split_prefix, with_prefix

SCORER_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "scorer")
# the scorer's network, in the terms of fastconv.train.cnn.build_cnn
SCORER_ARCH = {"channels": [16, 32], "hidden": [64], "kernel_size": 5, "in_shape": [1, 28, 28], "classes": 10}


def scorer_paths(dataset: str) -> tuple[str, str]:
    """(weights .safetensors, record .json) of the shipped scorer for ``dataset``."""
    return os.path.join(SCORER_DIR, f"{dataset}.safetensors"), os.path.join(SCORER_DIR, f"{dataset}.json")


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def save_scorer(model, dataset: str, record: dict) -> tuple[str, str]:
    """Write the scorer's weights and, beside them, ``record`` plus the file's SHA-256; returns (path, sha)."""
    path, record_path = scorer_paths(dataset)
    save_checkpoint(path, with_prefix(model.state_dict(), "model."),
                    {"kind": "scorer", "arch": SCORER_ARCH, "dataset": dataset,
                     "test_accuracy": record["test_accuracy"]})
    sha = _sha256(path)
    with open(record_path, "w") as f:
        json.dump(dict(record, file=os.path.basename(path), sha256=sha), f, indent=1)
        f.write("\n")
    return path, sha


class Scorer:
    """The fixed classifier: ``features`` (N, 64) and ``predict`` (N,) of images in [-1, 1].

    Images are (N, 1, 28, 28) float arrays in [-1, 1] (generator outputs; real images scaled with
    ``to_float(..., "pm1")``); they are mapped to [0, 1], the range the scorer was trained on.
    """

    def __init__(self, model, record: dict):
        self.model = model.eval()
        self.trunk = model.layers[:-1]   # up to the penultimate ReLU
        self.head = model.layers[-1]     # Linear 64 -> 10
        self.record = record

    @property
    def dataset(self) -> str:
        return self.record["dataset"]

    def run(self, images, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """(features float64 (N, 64), predicted labels int64 (N,)) on the host."""
        shape = tuple(getattr(images, "shape", ()))
        if len(shape) != 4 or shape[1:] != tuple(SCORER_ARCH["in_shape"]) or shape[0] < 1:
            raise ValueError(f"images: got shape {shape}, expected (N, 1, 28, 28) with N >= 1")
        device = self.model.device
        feats, preds = [], []
        for i in range(0, shape[0], batch_size):
            x = to_device(images[i:i + batch_size], device).astype(np.float32, copy=False)
            h = (x + np.float32(1.0)) * np.float32(0.5)
            for layer in self.trunk:
                h = layer.forward(h)
            logits = self.head.forward(h)
            feats.append(to_device(h, "cpu").astype(np.float64))
            preds.append(to_device(logits.argmax(axis=1), "cpu").astype(np.int64))
        return np.concatenate(feats), np.concatenate(preds)

    def features(self, images, batch_size: int = 500) -> np.ndarray:
        return self.run(images, batch_size)[0]

    def predict(self, images, batch_size: int = 500) -> np.ndarray:
        return self.run(images, batch_size)[1]

    def to(self, device: str, kernels: str | None = None) -> "Scorer":
        self.model.to(device, kernels=kernels)
        return self


def load_scorer(dataset: str = "fashion-mnist", device: str = "cpu", kernels: str | None = None) -> Scorer:
    """The shipped scorer for ``dataset``, checked against the SHA-256 recorded beside it."""
    from .train.cnn import build_cnn

    path, record_path = scorer_paths(dataset)
    if not os.path.isfile(path) or not os.path.isfile(record_path):
        have = sorted(n[:-len(".json")] for n in os.listdir(SCORER_DIR) if n.endswith(".json")) \
            if os.path.isdir(SCORER_DIR) else []
        raise CheckpointError(f"dataset: no scorer shipped for {dataset!r}; expected one of {have} "
                              "(scripts/train_scorer.py trains one)")
    with open(record_path) as f:
        record = json.load(f)
    sha = _sha256(path)
    if sha != record.get("sha256"):
        raise CheckpointError(f"scorer: {path!r} has SHA-256 {sha}, expected {record.get('sha256')} as recorded in "
                              f"{os.path.basename(record_path)}; reinstall the package or rerun "
                              "scripts/train_scorer.py")
    tensors, meta = load_checkpoint(path, kind="scorer", keys=("arch", "dataset"))
    arch = meta["arch"]
    model = build_cnn(arch["channels"], arch["hidden"], arch["kernel_size"], tuple(arch["in_shape"]),
                      arch["classes"], rng=np.random.default_rng(0))
    model.load_state_dict(split_prefix(tensors, "model."))
    return Scorer(model, record).to(device, kernels)


# ---------------------------------------------------------------------------------------------
# the Fréchet distance

def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D), unbiased) in float64 of features (N, D), N >= 2."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features: got shape {f.shape}, expected (N, D) with N >= 2")
    if not np.all(np.isfinite(f)):
        raise ValueError("features: got NaN or infinite values, expected finite features")
    mu = f.mean(axis=0)
    d = f - mu
    return mu, d.T @ d / (f.shape[0] - 1)


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    """The symmetric square root of a symmetric positive semi-definite matrix (eigenvalues < 0 from
    rounding are treated as 0)."""
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """d^2 between N(mu1, cov1) and N(mu2, cov2) (see the module docstring), float64.

    tr((S1^1/2 S2 S1^1/2)^1/2) is the sum of the square roots of the eigenvalues of the symmetric
    PSD matrix S1^1/2 S2 S1^1/2, so two symmetric eigendecompositions do it: no general matrix
    square root, and no complex parts from rounding as with sqrtm(S1 S2).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.asarray(cov1, np.float64), np.asarray(cov2, np.float64)
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    for name, a, want in (("mu1", mu1, (d,)), ("mu2", mu2, (d,)), ("cov1", cov1, (d, d)), ("cov2", cov2, (d, d))):
        if a.shape != want:
            raise ValueError(f"{name}: got shape {a.shape}, expected {want} (mu1 of shape (D,) fixes D)")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{name}: got NaN or infinite values, expected finite numbers")
    for name, c in (("cov1", cov1), ("cov2", cov2)):
        if not np.allclose(c, c.T, rtol=1e-10, atol=1e-12 * max(1.0, float(np.abs(c).max()))):
            raise ValueError(f"{name}: got a non-symmetric matrix, expected a covariance matrix")
    s1h = _psd_sqrt(cov1)
    m = s1h @ cov2 @ s1h
    w = np.linalg.eigvalsh((m + m.T) * 0.5)
    tr_sqrt = float(np.sqrt(np.clip(w, 0.0, None)).sum())
    diff = mu1 - mu2
    return max(float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2.0 * tr_sqrt), 0.0)


def frechet_distance_of(features1, features2) -> float:
    """The Fréchet distance between the Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*feature_stats(features1), *feature_stats(features2))


def label_fidelity(predicted, requested, classes: int = 10) -> np.ndarray:
    """Per class c: the share of images generated for class c that the scorer labels c; float64 (classes,),
    NaN for a class that was not requested."""
    predicted, requested = np.asarray(predicted), np.asarray(requested)
    if predicted.shape != requested.shape or predicted.ndim != 1:
        raise ValueError(f"predicted: got shape {predicted.shape}, expected the shape of requested "
                         f"{requested.shape}, both (N,)")
    hits = np.bincount(requested, weights=(predicted == requested).astype(np.float64), minlength=classes)
    counts = np.bincount(requested, minlength=classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, hits / np.maximum(counts, 1), np.nan)



# ---------------------------------------------------------------------------------------------
# scoring generators against the data set

def generated_features(scorer: Scorer, sample, n: int, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """(features (n, 64), scorer labels (n,)) of n images from ``sample(m)`` -> (m, 1, 28, 28) in [-1, 1]."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n: got {n!r}, expected an int >= 2 (images to score)")
    feats, preds = [], []
    for i in range(0, n, batch_size):
        f, p = scorer.run(sample(min(batch_size, n - i)), batch_size)
        feats.append(f)
        preds.append(p)
    return np.concatenate(feats), np.concatenate(preds)


def real_features(scorer: Scorer, images: np.ndarray, n: int | None = None) -> np.ndarray:
    """Features of the first n (all when None) uint8 images (N, 28, 28) of a split."""
    from .data import to_float

    if n is not None and n > len(images):
        raise ValueError(f"n: got {n}, expected at most {len(images)} (the images in the split)")
    return scorer.features(to_float(images[:n], "pm1"))


# ---------------------------------------------------------------------------------------------
# scoring a GAN checkpoint (``fastconv score``)

def sampler(G, nz: int, rng: np.random.Generator, xp=np):
    """sample(m) -> (images (m, C, H, W) in [-1, 1] from G in eval mode, requested labels or None).

    A conditional G gets the labels 0, 1, ..., 9, 0, 1, ... in turn, so every class is requested
    equally often over consecutive calls.
    """
    from .nn.conditional import ConditionalGenerator
    from .train.gan import generate, noise

    conditional = isinstance(G, ConditionalGenerator)
    count = [0]

    def sample(m):
        z = noise(rng, m, nz, xp)
        if not conditional:
            return generate(G, z), None
        labels = (np.arange(count[0], count[0] + m) % G.num_classes).astype(np.int64)
        count[0] += m
        was = G.training
        G.eval()
        images = G.forward(z, xp.asarray(labels))
        G.train(was)
        return images, labels
    return sample


def score_generator(G, nz: int, scorer: Scorer, real: np.ndarray, n: int, rng: np.random.Generator,
                    batch_size: int = 500) -> dict:
    """{"fd": Fréchet distance of n samples of G (noise size nz) to the real features,
    "label_fidelity": per class for a conditional G, else None}."""
    sample = sampler(G, nz, rng, xp=_xp_of(G))
    requested = []

    def images(m):
        x, labels = sample(m)
        if labels is not None:
            requested.append(labels)
        return x

    feats, pred = generated_features(scorer, images, n, batch_size)
    out = {"fd": frechet_distance_of(real, feats), "label_fidelity": None}
    if requested:
        out["label_fidelity"] = label_fidelity(pred, np.concatenate(requested), scorer.model.layers[-1].out_features)
    return out


def _xp_of(G):
    from .backend import array_module
    return array_module(G.parameters()[0].data)


def score_checkpoint(path: str, n: int = 10000, seed: int = 0, data_dir: str | None = None,
                     device: str = "cpu", kernels: str | None = None) -> dict:
    """Score a GAN checkpoint on n samples beside its references, on the checkpoint's data set:

    - ``fd``: its generator against the first n training images;
    - ``real_vs_real``: the first n test images against the same n training images;
    - ``untrained_fd``: the same architecture freshly initialised (seed ``seed``);
    - ``label_fidelity`` (conditional models): the scorer's accuracy per requested class.
    """
    from .data import load_dataset
    from .train.gan import build_gan, generator_from_checkpoint

    G, meta = generator_from_checkpoint(path, device=device, kernels=kernels)
    dataset = meta.get("dataset", "fashion-mnist")
    scorer = load_scorer(dataset, device=device, kernels=kernels)
    data = load_dataset(dataset, data_dir)
    limit = min(len(data.train_labels), len(data.test_labels))
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 2 <= n <= limit:
        raise ValueError(f"n: got {n!r}, expected an int in [2, {limit}] ({data.describe()})")
    real = real_features(scorer, data.train_images, n)
    result = {"checkpoint": path, "model": meta["arch"]["model"], "dataset": dataset, "data": data.describe(),
              "n": int(n),
              "scorer_test_accuracy": scorer.record["test_accuracy"],
              "real_vs_real": frechet_distance_of(real, real_features(scorer, data.test_images, n))}
    nz = meta["arch"]["nz"]
    trained = score_generator(G, nz, scorer, real, n, np.random.default_rng([seed, 3]))
    G0, _ = build_gan(meta["arch"], rng=np.random.default_rng(seed))
    G0.to(device, kernels=kernels)
    untrained = score_generator(G0.eval(), nz, scorer, real, n, np.random.default_rng([seed, 3]))
    result.update(fd=trained["fd"], untrained_fd=untrained["fd"])
    if trained["label_fidelity"] is not None:
        result.update(label_fidelity=trained["label_fidelity"].tolist(),
                      untrained_label_fidelity=untrained["label_fidelity"].tolist())
    return result


def format_score(result: dict, class_names=None) -> str:
    """The lines ``fastconv score`` prints."""
    lines = [f"{result['model']} checkpoint {result['checkpoint']}",
             f"data: {result['data']}; {result['n']} images per set; features: the shipped scorer "
             f"({100 * result['scorer_test_accuracy']:.2f} % test accuracy)",
             f"Fréchet distance to the training images: {result['fd']:.3f}",
             f"  reference, real test images:          {result['real_vs_real']:.3f}",
             f"  reference, untrained generator:       {result['untrained_fd']:.3f}"]
    if "label_fidelity" in result:
        fid = result["label_fidelity"]
        names = class_names or [str(c) for c in range(len(fid))]
        lines.append(f"label fidelity (scorer accuracy on images generated for each class): mean "
                     f"{100 * float(np.mean(fid)):.1f} % (untrained generator "
                     f"{100 * float(np.mean(result['untrained_label_fidelity'])):.1f} %)")
        lines += [f"  {name:<12} {100 * f:5.1f} %" for name, f in zip(names, fid)]
    return "\n".join(lines)
