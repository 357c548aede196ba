"""GAN augmentation, measured: LeNet on k labelled images per class, with and without classic
augmentation and the conditional DCGAN's labelled samples.

    python benchmarks/augment_table.py [--k 10 50 100] [--seeds 0 1 2] [--gan-iterations 200]
                                       [--cnn-steps 80] [--gen-per-class 300] [--out runs/augment]
                                       [--device cpu|cuda]

For each k and seed: k images of each class are drawn (seeded) from the Fashion-MNIST training
split, the rest unused. The conditional DCGAN (fastconv.train.cdcgan, batch min(64, 10k), Adam
2e-4, beta1 0.5) trains on those 10k images only, then generates ``--gen-per-class`` images of
each class; the shipped scorer measures their label fidelity and Fréchet distance. Then the
default LeNet (fastconv.train.cnn.build_cnn) trains for ``--cnn-steps`` SGD steps (batch 64,
momentum 0.9, lr 0.05 cosine-annealed to 0 over the steps) on

    (a) real: the 10k real images;
    (b) real + aug: the same, each batch shifted by up to 2 pixels and mirrored at random;
    (c) real + G: batches of 32 real and 32 generated images;
    (d) real + aug + G: as (c), the whole batch augmented,

and its accuracy on the full 10,000-image test split is recorded. The four runs of one (k, seed)
start from the same weights and see the same number of images, so only the data differ.
Results accumulate in <out>/results.json (a rerun with the same settings skips what is done, so
runs for different k may go to separate folders and their rows be joined); the Markdown table
(mean ± std over seeds) is printed and written to <out>/table.md, the plot to <out>/accuracy.png.
The defaults are sized for a shared 2-core CPU (one (k, seed) in about 9 minutes there); with
``--device cuda`` the GAN and LeNet train on the GPU (the scorer runs on the CPU either way).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastconv import nn  # noqa: E402
from fastconv.backend import to_device  # noqa: E402
from fastconv.data import load_dataset, to_float  # noqa: E402
from fastconv.data.augment import augment, flips_allowed  # noqa: E402
from fastconv.optim import SGD  # noqa: E402
from fastconv.schedule import LRSchedule  # noqa: E402
from fastconv.score import frechet_distance_of, label_fidelity, load_scorer, real_features  # noqa: E402
from fastconv.train.cdcgan import fit_cdcgan, generate_labelled  # noqa: E402
from fastconv.train.cnn import build_cnn, evaluate  # noqa: E402
from fastconv.train.images import plot_curves  # noqa: E402

CONDITIONS = ("real", "real + aug", "real + G", "real + aug + G")
BATCH, LR, MOMENTUM, SHIFT = 64, 0.05, 0.9, 2


def pick(labels: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of k images of each class, drawn without replacement."""
    return np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False) for c in range(10)])


def train_lenet(x_real, y_real, x_gen, y_gen, use_aug: bool, flip: bool, steps: int, seed: int, tag: int,
                x_test, y_test, device: str = "cpu") -> float:
    """Test accuracy of the default LeNet after ``steps`` SGD steps on real (and generated) images in
    [0, 1] (host arrays; batches are drawn and augmented on the host, then moved to ``device``)."""
    model = build_cnn(rng=np.random.default_rng(seed))  # the same start for every condition of one (k, seed)
    model.to(device)
    opt = SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    sched = LRSchedule("cosine", LR, total=steps)
    loss_fn = nn.CrossEntropyLoss()
    rng = np.random.default_rng([seed, tag])
    n_real = BATCH if x_gen is None else BATCH // 2
    for step in range(steps):
        ir = rng.integers(0, len(x_real), n_real)
        xb, yb = x_real[ir], y_real[ir]
        if x_gen is not None:
            ig = rng.integers(0, len(x_gen), BATCH - n_real)
            xb, yb = np.concatenate([xb, x_gen[ig]]), np.concatenate([yb, y_gen[ig]])
        if use_aug:
            xb = augment(xb, rng, SHIFT, flip, fill=0.0)
        opt.lr = sched(step)
        loss = loss_fn.forward(model.forward(to_device(xb, device)), to_device(yb, device))
        opt.zero_grad()
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        if not np.isfinite(float(loss)):
            raise SystemExit(f"LeNet: loss {float(loss)} at step {step + 1}; expected a finite loss")
    return evaluate(model, to_device(x_test, device), to_device(y_test, device))[1]


def run_one(k, seed, args, data, scorer, real_ref, x_test, y_test) -> dict:
    t0 = time.perf_counter()
    idx = pick(data.train_labels, k, np.random.default_rng([seed, k]))
    x01, y = to_float(data.train_images[idx]), data.train_labels[idx]
    G, _, hist = fit_cdcgan(x01 * 2 - 1, y, args.gan_iterations, batch_size=BATCH, seed=seed, device=args.device)
    xp = np
    if args.device != "cpu":
        import cupy as xp
    gen, gen_labels = generate_labelled(G, args.gen_per_class, np.random.default_rng([seed, k, 2]), xp=xp)
    gen = to_device(gen, "cpu")
    feats, pred = scorer.run(gen)
    fidelity = label_fidelity(pred, gen_labels)
    gen01 = (gen + 1) * 0.5
    gan_seconds = time.perf_counter() - t0
    flip = flips_allowed("fashion-mnist")
    acc = {}
    for tag, name in enumerate(CONDITIONS):
        use_g, use_aug = "G" in name, "aug" in name
        acc[name] = train_lenet(x01, y, gen01 if use_g else None, gen_labels if use_g else None, use_aug, flip,
                                args.cnn_steps, seed, tag, x_test, y_test, args.device)
    return {"k": k, "seed": seed, "accuracy": acc, "label_fidelity": fidelity.tolist(),
            "mean_label_fidelity": float(np.nanmean(fidelity)), "gen_fd": frechet_distance_of(real_ref, feats),
            "final_d_x": hist["d_x"][-1], "final_d_g_z": hist["d_g_z"][-1], "gan_seconds": gan_seconds,
            "seconds": time.perf_counter() - t0}


def table(rows, ks) -> str:
    lines = ["| k per class (10k images) | " + " | ".join(CONDITIONS) + " | G label fidelity | G FD |",
             "|---" * (len(CONDITIONS) + 3) + "|"]
    for k in ks:
        sel = [r for r in rows if r["k"] == k]
        if not sel:
            continue
        cells = []
        for c in CONDITIONS:
            a = 100 * np.array([r["accuracy"][c] for r in sel])
            cells.append(f"{a.mean():.2f} ± {a.std(ddof=1) if len(a) > 1 else 0:.2f}")
        fid = 100 * np.array([r["mean_label_fidelity"] for r in sel])
        fd = np.array([r["gen_fd"] for r in sel])
        lines.append(f"| {k} ({10 * k}) | " + " | ".join(cells) + f" | {fid.mean():.1f} % | {fd.mean():.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, nargs="+", default=[10, 50, 100])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--gan-iterations", type=int, default=200)
    p.add_argument("--cnn-steps", type=int, default=80)
    p.add_argument("--gen-per-class", type=int, default=300)
    p.add_argument("--out", default="runs/augment")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the GAN and LeNet train")
    args = p.parse_args(argv)
    data = load_dataset("fashion-mnist", args.data_dir)
    scorer = load_scorer("fashion-mnist")
    real_ref = real_features(scorer, data.train_images, 10000)
    x_test, y_test = to_float(data.test_images), data.test_labels
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, "results.json")
    settings = {"gan_iterations": args.gan_iterations, "cnn_steps": args.cnn_steps,
                "gen_per_class": args.gen_per_class, "data": data.describe(), "device": args.device}
    done = {"settings": settings, "rows": []}
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old.get("settings") == settings:
            done = old
    for k in args.k:
        for seed in args.seeds:
            if any(r["k"] == k and r["seed"] == seed for r in done["rows"]):
                continue
            row = run_one(k, seed, args, data, scorer, real_ref, x_test, y_test)
            done["rows"].append(row)
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                json.dump(done, f, indent=1)
            os.replace(tmp, path)
            print(f"k {k} seed {seed}: " + ", ".join(f"{c} {100 * a:.2f} %" for c, a in row["accuracy"].items())
                  + f"; G label fidelity {100 * row['mean_label_fidelity']:.1f} %, FD {row['gen_fd']:.1f} "
                  f"({row['seconds']:.0f} s)", flush=True)
    rows = [r for r in done["rows"] if r["k"] in args.k and r["seed"] in args.seeds]
    text = table(rows, args.k)
    print(text)
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(f"{data.describe()}; {settings}\n\n{text}\n")
    series = {}
    for c in CONDITIONS:
        ks = [k for k in args.k if any(r["k"] == k for r in rows)]
        series[c] = (ks, [100 * float(np.mean([r["accuracy"][c] for r in rows if r["k"] == k])) for k in ks])
    plot_curves(os.path.join(args.out, "accuracy.png"), series,
                title="LeNet test accuracy (%), mean over seeds", xlabel="labelled images per class (k)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
