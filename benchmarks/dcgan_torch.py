"""fastconv's DCGAN beside the same recipe in PyTorch, both scored with the shipped Fashion-MNIST scorer.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/dcgan_torch.py --iterations 300 --seeds 0 1 2 \
        [--n 10000] [--out runs/dcgan_vs_torch] [--device cpu|cuda]

The same recipe on both sides (fastconv.train.gan): G Linear nz->128*7*7 (no bias), BN, ReLU,
ConvT 128->64 4/2/1 (no bias), BN, ReLU, ConvT 64->1 4/2/1, Tanh; D Conv 1->64 4/2/1, LeakyReLU
0.2, Conv 64->128 4/2/1 (no bias), BN, LeakyReLU 0.2, Linear 6272->1; weights N(0, 0.02), BN
scales N(1, 0.02), biases 0; Adam lr 2e-4, betas (0.5, 0.999); batch 64; one D step on a real
and a fake batch, then one non-saturating G step on that fake batch; epochs are seeded shuffles
of the full training split; every run is seeded by its seed alone (fastconv: numpy
default_rng(seed), PyTorch: torch.manual_seed(seed)). The two cannot draw the same random
numbers, so the comparison is between the spreads over seeds.

Each generator is scored in eval mode on ``--n`` samples: the Fréchet distance to the first n
training images, beside real-vs-real (the first n test images) and each side's untrained
generator. PyTorch is imported here only (a benchmark peer, never a fastconv dependency). On a
shared CPU, one thread each (the environment variables above; PyTorch reads OMP_NUM_THREADS)
keeps both sides off each other's cores.
Writes <out>/results.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fastconv.data import load_dataset  # noqa: E402
from fastconv.score import (frechet_distance_of, generated_features, load_scorer, real_features,  # noqa: E402
                            score_generator)
from fastconv.train.gan import GANConfig, build_dcgan, generator_from_checkpoint, train_gan  # noqa: E402

NZ, WIDTH, BATCH, LR, BETA1 = 100, 64, 64, 2e-4, 0.5


# ---------------------------------------------------------------------------------------------
# the PyTorch side

def torch_dcgan(torch):
    tnn = torch.nn
    w2 = 2 * WIDTH
    G = tnn.Sequential(
        tnn.Linear(NZ, w2 * 49, bias=False), tnn.BatchNorm1d(w2 * 49), tnn.ReLU(), tnn.Unflatten(1, (w2, 7, 7)),
        tnn.ConvTranspose2d(w2, WIDTH, 4, 2, 1, bias=False), tnn.BatchNorm2d(WIDTH), tnn.ReLU(),
        tnn.ConvTranspose2d(WIDTH, 1, 4, 2, 1), tnn.Tanh())
    D = tnn.Sequential(
        tnn.Conv2d(1, WIDTH, 4, 2, 1), tnn.LeakyReLU(0.2),
        tnn.Conv2d(WIDTH, w2, 4, 2, 1, bias=False), tnn.BatchNorm2d(w2), tnn.LeakyReLU(0.2),
        tnn.Flatten(), tnn.Linear(w2 * 49, 1))
    for m in list(G.modules()) + list(D.modules()):
        if isinstance(m, (tnn.Conv2d, tnn.ConvTranspose2d, tnn.Linear)):
            tnn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                tnn.init.zeros_(m.bias)
        elif isinstance(m, (tnn.BatchNorm1d, tnn.BatchNorm2d)):
            tnn.init.normal_(m.weight, 1.0, 0.02)
            tnn.init.zeros_(m.bias)
    return G, D


def train_torch(torch, x_train, iterations: int, seed: int, device: str = "cpu"):
    """The recipe in PyTorch on ``device`` ("cpu" or "cuda"); returns (G, seconds)."""
    F = torch.nn.functional
    torch.manual_seed(seed)
    G, D = (m.to(device) for m in torch_dcgan(torch))
    opt_g = torch.optim.Adam(G.parameters(), lr=LR, betas=(BETA1, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), lr=LR, betas=(BETA1, 0.999))
    x = torch.from_numpy(x_train).to(device)
    per_epoch = len(x) // BATCH
    ones, zeros = torch.ones(BATCH, 1, device=device), torch.zeros(BATCH, 1, device=device)
    t0 = time.perf_counter()
    it = 0
    while it < iterations:
        order = torch.randperm(len(x)).to(device)
        for i in range(per_epoch):
            if it == iterations:
                break
            real = x[order[i * BATCH:(i + 1) * BATCH]]
            opt_d.zero_grad()
            fake = G(torch.randn(BATCH, NZ, device=device))
            d_loss = F.binary_cross_entropy_with_logits(D(real), ones) + \
                F.binary_cross_entropy_with_logits(D(fake.detach()), zeros)
            d_loss.backward()
            opt_d.step()
            opt_g.zero_grad()
            g_loss = F.binary_cross_entropy_with_logits(D(fake), ones)
            g_loss.backward()
            opt_g.step()
            it += 1
            if not (torch.isfinite(d_loss) and torch.isfinite(g_loss)):
                raise SystemExit(f"PyTorch seed {seed}: non-finite loss at iteration {it}")
    if device != "cpu":
        torch.cuda.synchronize()
    return G.eval(), time.perf_counter() - t0


def torch_sampler(torch, G, seed: int):
    gen = torch.Generator().manual_seed(10_000 + seed)   # CPU noise: the same on any device
    device = next(G.parameters()).device

    def sample(m):
        with torch.no_grad():
            return G(torch.randn(m, NZ, generator=gen).to(device)).cpu().numpy()
    return sample


# ---------------------------------------------------------------------------------------------

def mean_std(values):
    a = np.asarray(values, np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n", type=int, default=10000, help="samples scored per generator")
    p.add_argument("--out", default="runs/dcgan_vs_torch")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--only", choices=("both", "fastconv", "torch"), default="both")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where both sides train (scoring runs on the CPU either way)")
    args = p.parse_args(argv)
    import torch

    data = load_dataset("fashion-mnist", args.data_dir)
    if len(data.train_labels) < 60000:
        raise SystemExit(f"data: {data.describe()}; expected the full Fashion-MNIST for this benchmark")
    scorer = load_scorer("fashion-mnist")
    real = real_features(scorer, data.train_images, args.n)
    ref = {"real_vs_real": frechet_distance_of(real, real_features(scorer, data.test_images, args.n))}
    print(f"real (train) vs real (test), n={args.n}: FD {ref['real_vs_real']:.3f}", flush=True)
    runs = {"fastconv": [], "torch": []}
    x_pm1 = None
    for seed in args.seeds:
        if args.only in ("both", "fastconv"):
            G0, _ = build_dcgan(NZ, WIDTH, rng=np.random.default_rng(seed))
            # noise from default_rng([seed, 2]): not the training stream, not the fixed grid's
            untrained = score_generator(G0.eval(), NZ, scorer, real, args.n, np.random.default_rng([seed, 2]))["fd"]
            out = os.path.join(args.out, f"fastconv-seed{seed}")
            t0 = time.perf_counter()
            train_gan(GANConfig(model="dcgan", iterations=args.iterations, seed=seed, out=out, device=args.device,
                                progress=False, sample_every=10 ** 9, data_dir=args.data_dir))
            seconds = time.perf_counter() - t0
            G, _ = generator_from_checkpoint(os.path.join(out, "checkpoint.safetensors"))
            fd = score_generator(G, NZ, scorer, real, args.n, np.random.default_rng([seed, 2]))["fd"]
            runs["fastconv"].append({"seed": seed, "fd": fd, "untrained_fd": untrained, "seconds": seconds})
            print(f"fastconv seed {seed}: FD {fd:.3f} (untrained {untrained:.3f}), {seconds:.0f} s", flush=True)
        if args.only in ("both", "torch"):
            from fastconv.data import to_float
            x_pm1 = to_float(data.train_images, "pm1") if x_pm1 is None else x_pm1
            torch.manual_seed(seed)
            G0, _ = torch_dcgan(torch)
            untrained = frechet_distance_of(
                real, generated_features(scorer, torch_sampler(torch, G0.eval(), seed), args.n)[0])
            G, seconds = train_torch(torch, x_pm1, args.iterations, seed, args.device)
            G = G.cpu()
            fd = frechet_distance_of(real, generated_features(scorer, torch_sampler(torch, G, seed), args.n)[0])
            runs["torch"].append({"seed": seed, "fd": fd, "untrained_fd": untrained, "seconds": seconds})
            print(f"PyTorch seed {seed}: FD {fd:.3f} (untrained {untrained:.3f}), {seconds:.0f} s", flush=True)
    result = {"iterations": args.iterations, "batch": BATCH, "device": args.device, "n": args.n, "seeds": args.seeds, "reference": ref,
              "runs": runs, "torch": torch.__version__, "threads": torch.get_num_threads()}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print(f"\n| DCGAN, {args.iterations} iterations, batch {BATCH}, on {args.device} | FD (mean ± std over seeds {args.seeds}) | "
          "untrained G | s per run |\n|---|---|---|---|")
    for side, rows in runs.items():
        if rows:
            m, s = mean_std([r["fd"] for r in rows])
            um, us = mean_std([r["untrained_fd"] for r in rows])
            tm, _ = mean_std([r["seconds"] for r in rows])
            print(f"| {side} | {m:.2f} ± {s:.2f} | {um:.1f} ± {us:.1f} | {tm:.0f} |")
    print(f"| real train vs real test | {ref['real_vs_real']:.3f} | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
