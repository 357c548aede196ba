"""Training-step and epoch throughput on the GPU: fastconv eager / CUDA graph beside PyTorch eager /
whole-step CUDA graph (torch.cuda.graphs), TF32 off everywhere.

    python benchmarks/bench_step.py [--batches 64,128,512] [--models lenet,dcgan] [--reps 30]
                                    [--warmup 10] [--epoch] [--emu]

Rows (images per second, median over ``--reps`` timed runs of ``--steps`` steps each, one device
sync per run, after ``--warmup`` steps):

- LeNet (the trainer's default CNN, SGD momentum 0.9): one step = forward, cross-entropy,
  backward without conv1's input gradient (neither framework computes it), update.
- DCGAN (fastconv.train.gan.build_dcgan, Adam 2e-4, betas 0.5/0.999): D on a real and a fake
  batch, then G through D: the GAN trainer's own step (fastconv.train.gan_step.GANStep, which
  also sums D(x), D(G(z)) and the losses on the device), on a fixed real batch and noise.
- ``--epoch``: one epoch of LeNet on Fashion-MNIST (batch 128) through ``fastconv train cnn``'s
  loop (graph on, then off) and through the same recipe as a PyTorch loop (data on the GPU,
  the same shuffling, eager and whole-step graph), in images per second.

Each fastconv graph row is also timed with the autotune setting on (the "fc tuned" column: conv passes
pick their kernels by timing them in the first step's eager pass, as PyTorch's rows do with
torch.backends.cudnn.benchmark) and set against PyTorch's graph ("tuned/torch-graph"); not with --emu.

``--emu`` desk-checks the fastconv rows on the CPU stand-in (fastconv.emu: the CUDA C kernels
run on the CPU, slowly): LeNet at batch 8, two runs of two steps (``--models dcgan``: the DCGAN),
PyTorch rows skipped. Its
numbers mean nothing; it shows the code path runs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import timing  # noqa: E402


def ips(step, batch, sync, steps, reps, warmup):
    """Images per second of ``step``: median over reps of steps*batch / (wall time of steps + sync)."""
    per = timing.wall_times_s(step, steps, reps, warmup, sync)
    return statistics.median(steps * batch / t for t in per)


# ---- fastconv --------------------------------------------------------------------------------

def fc_lenet(cp, batch, graph):
    from fastconv import nn, optim
    from fastconv.graph import StepGraph
    from fastconv.train.cnn import build_cnn, train_step

    rng = np.random.default_rng(0)
    model = build_cnn(rng=rng)
    model.to("cuda")
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    x = cp.asarray(rng.standard_normal((batch, 1, 28, 28)).astype(np.float32))
    y = cp.asarray(rng.integers(0, 10, batch).astype(np.int32))

    def step(xb, yb):
        return train_step(model, opt, loss_fn, xb, yb)
    if graph:
        g = StepGraph(step)
        return lambda: g(x, y)
    return lambda: step(x, y)


def fc_dcgan(cp, batch, graph):
    """The GAN trainer's own step (fastconv.train.gan_step.GANStep: D on a real and a fake batch,
    G through D, the logged statistics summed on the device) on a fixed real batch and noise."""
    from fastconv import optim
    from fastconv.train.gan import build_dcgan
    from fastconv.train.gan_step import GANStep

    rng = np.random.default_rng(0)
    G, D = build_dcgan(rng=rng)
    G.to("cuda")
    D.to("cuda")
    oG = optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999))
    oD = optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999))
    step = GANStep(G, D, oG, oD, batch, 100, graph=graph)
    xs = cp.asarray(rng.uniform(-1, 1, (batch, 1, 28, 28)).astype(np.float32))
    z = cp.asarray(rng.standard_normal((batch, 100)).astype(np.float32))
    return lambda: step(xs, z)


# ---- PyTorch ---------------------------------------------------------------------------------

def torch_graphed(torch, step, warmup=3):
    """``step`` (no arguments, static tensors) captured whole with torch.cuda.graphs after warm-up
    steps on a side stream, as PyTorch's documentation does it; returns the replay function."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    return g.replay


def torch_lenet_step(torch, batch, graph):
    from shapes import torch_lenet

    model = torch_lenet().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    x = torch.randn(batch, 1, 28, 28, device="cuda")
    y = torch.randint(0, 10, (batch,), device="cuda")

    def step():
        opt.zero_grad(set_to_none=not graph)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return torch_graphed(torch, step) if graph else step


def torch_dcgan_step(torch, batch, graph):
    from dcgan_torch import torch_dcgan

    tG, tD = (m.cuda() for m in torch_dcgan(torch))
    toG = torch.optim.Adam(tG.parameters(), lr=2e-4, betas=(0.5, 0.999), capturable=graph)
    toD = torch.optim.Adam(tD.parameters(), lr=2e-4, betas=(0.5, 0.999), capturable=graph)
    x = torch.rand(batch, 1, 28, 28, device="cuda") * 2 - 1
    z = torch.randn(batch, 100, device="cuda")
    t1, t0 = torch.ones(batch, 1, device="cuda"), torch.zeros(batch, 1, device="cuda")
    bce = torch.nn.functional.binary_cross_entropy_with_logits

    def step():
        toD.zero_grad(set_to_none=not graph)
        bce(tD(x), t1).backward()
        fake = tG(z)
        bce(tD(fake.detach()), t0).backward()
        toD.step()
        toG.zero_grad(set_to_none=not graph)
        bce(tD(fake), t1).backward()
        toG.step()
    return torch_graphed(torch, step) if graph else step


# ---- epochs ----------------------------------------------------------------------------------

def fc_epoch(graph, out):
    """Images per second of one LeNet epoch on Fashion-MNIST through fastconv's CNN trainer."""
    import json
    import os

    from fastconv.train.cnn import CNNConfig, train_cnn

    train_cnn(CNNConfig(epochs=1, device="cuda", graph=graph, out=out, progress=False))
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == "epoch"][-1]["images_per_s"]


def torch_epoch(torch, graph, batch=128):
    """Images per second of one epoch of the same recipe in PyTorch (data on the GPU, shuffled with
    the trainer's numpy generator; the last smaller batch eager, as fastconv does)."""
    from shapes import torch_lenet

    from fastconv.data import load_dataset, to_float
    from fastconv.data.datasets import batch_indices

    data = load_dataset("fashion-mnist")
    xd = torch.from_numpy(to_float(data.train_images)).cuda()
    yd = torch.from_numpy(data.train_labels.astype(np.int64)).cuda()
    model = torch_lenet().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    xs, ys = xd[:batch].clone(), yd[:batch].clone()

    def step(xb, yb):
        opt.zero_grad(set_to_none=not graph)
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss
    replay = torch_graphed(torch, lambda: step(xs, ys)) if graph else None
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for idx in batch_indices(len(yd), batch, np.random.default_rng(0), False):
        idx = torch.from_numpy(idx).cuda()
        if replay is not None and len(idx) == batch:
            xs.copy_(xd[idx])
            ys.copy_(yd[idx])
            replay()
        else:
            step(xd[idx], yd[idx])
    torch.cuda.synchronize()
    return len(yd) / (time.perf_counter() - t0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", default="64,128,512", help="comma-separated batch sizes (default 64,128,512)")
    ap.add_argument("--models", default="lenet,dcgan", help="comma-separated: lenet, dcgan (default both)")
    ap.add_argument("--reps", type=int, default=30, help="timed runs per row; the median is reported (default 30)")
    ap.add_argument("--steps", type=int, default=20, help="steps per timed run (default 20)")
    ap.add_argument("--warmup", type=int, default=10, help="warm-up steps per row (default 10)")
    ap.add_argument("--epoch", action="store_true", help="also time one LeNet epoch of Fashion-MNIST")
    ap.add_argument("--out", default="runs/bench_step", help="folder of the --epoch trainer runs")
    ap.add_argument("--emu", action="store_true", help="desk-check the fastconv rows on the CPU stand-in")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b]
    models = [m for m in args.models.split(",") if m]
    if any(b < 1 for b in batches) or not set(models) <= {"lenet", "dcgan"}:
        ap.error(f"--batches {args.batches!r} / --models {args.models!r}: expected positive ints / lenet,dcgan")

    import fastconv
    if args.emu:
        from fastconv import emu
        ctx, batches, models = emu.activate(), [8], models[:1]
        args.reps, args.steps, args.warmup, args.epoch = 2, 2, 1, False
    else:
        import contextlib
        ctx = contextlib.nullcontext()
    with ctx, fastconv.using(tf32=False):
        from fastconv.backend import require_gpu
        cp = require_gpu()
        sync = cp.cuda.Device().synchronize if not args.emu else (lambda: None)
        torch = None
        if not args.emu:
            import torch
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.benchmark = True
            print(f"card: {torch.cuda.get_device_name()}; torch {torch.__version__} (TF32 off)")
        print(f"{'model':<7}{'batch':>6}{'fc eager':>12}{'fc graph':>12}{'torch eager':>13}{'torch graph':>13}"
              f"{'graph/torch-graph':>19}{'graph/torch-eager':>19}{'fc tuned':>12}{'tuned/torch-graph':>19}"
              "   (images/s)")
        for model in models:
            for b in batches:
                make_fc = fc_lenet if model == "lenet" else fc_dcgan
                fe = ips(make_fc(cp, b, False), b, sync, args.steps, args.reps, args.warmup)
                fg = ips(make_fc(cp, b, True), b, sync, args.steps, args.reps, args.warmup)
                ft = None
                if not args.emu:   # on the CPU layer its trials take minutes (tests/emu/test_emu_autotune.py runs them)
                    with fastconv.using(autotune=True):   # tuned in the graph's first (eager) pass
                        ft = ips(make_fc(cp, b, True), b, sync, args.steps, args.reps, args.warmup)
                te = tg = None
                if torch is not None:
                    tsync = torch.cuda.synchronize
                    make = torch_lenet_step if model == "lenet" else torch_dcgan_step
                    te = ips(make(torch, b, False), b, tsync, args.steps, args.reps, args.warmup)
                    tg = ips(make(torch, b, True), b, tsync, args.steps, args.reps, args.warmup)
                cell = lambda v: f"{v:>12.0f}" if v is not None else f"{'-':>12}"  # noqa: E731
                ratio = lambda a, c: f"{a / c:>19.2f}" if a and c else f"{'-':>19}"  # noqa: E731
                print(f"{model:<7}{b:>6}{cell(fe)}{cell(fg)} {cell(te)} {cell(tg)}{ratio(fg, tg)}{ratio(fg, te)}"
                      f"{cell(ft)}{ratio(ft, tg)}", flush=True)
        if args.epoch:
            print(f"\nLeNet epoch, Fashion-MNIST, batch 128 (images/s): fastconv graph "
                  f"{fc_epoch('on', args.out + '/graph'):.0f}, eager {fc_epoch('off', args.out + '/eager'):.0f}; "
                  f"PyTorch eager {torch_epoch(torch, False):.0f}, graph {torch_epoch(torch, True):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
