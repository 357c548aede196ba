"""Train a generative adversarial network on 28x28 images: the original MLP GAN or DCGAN.

G maps noise z ~ N(0, I) to an image in [-1, 1] (tanh); D maps an image to one logit, with
D(x) = sigmoid(logit) the probability that x is real. Real images are scaled to [-1, 1].

Each iteration performs ``d_steps`` discriminator updates, then one generator update:

(1) D ascends log D(x) + log(1 - D(G(z))), i.e. descends BCE(D(x), 1) + BCE(D(G(z)), 0). G's output
    is used as a constant (no gradient flows into G); the real and the fake batch each get their own
    forward/backward and the parameter gradients add up before the one optimizer step.
(2) G descends -log D(G(z)) (``g_loss="nonsat"``, the non-saturating loss, strong gradients early)
    or log(1 - D(G(z))) (``g_loss="minimax"``, the paper's form). The gradient reaches G through D:
    dlogits -> D.backward (returns d image) -> G.backward. D's parameter gradients from this pass
    are discarded (zeroed before D's next update).

A fixed noise batch is rendered to a PNG grid every ``sample_every`` iterations and at the end;
losses, mean D(x) and mean D(G(z)) are logged; a checkpoint is written after every epoch.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import nn
from ..checkpoint import (CheckpointError, load_checkpoint, require_keys, rng_from_state, rng_state, save_checkpoint,
                          split_prefix, with_prefix)
from ..data import fake_dataset, load_dataset, to_float
from .common import (CHECKPOINT_NAME, METRICS_NAME, MetricsLog, RunConfig, check_finite, check_positive,
                     check_resume_config, parse_int_list, progress, require_extras, resolve_device, resume_path, say,
                     to_host_float, use_graph, writable_dir, xp_for)
from .images import plot_curves, save_grid

MODELS = ("mlp", "dcgan")
G_LOSSES = ("nonsat", "minimax")
HISTORY_KEYS = ("iter", "d_loss", "g_loss", "d_x", "d_g_z")
# metadata a GAN checkpoint must hold: to rebuild G (sample), and to resume a run
MODEL_KEYS = ("arch.model", "arch.nz", "arch.image_shape", "epoch")
ARCH_KEYS = {"dcgan": ("arch.width",), "mlp": ("arch.g_hidden", "arch.d_hidden")}
# settings that change the trained weights (seed: also the fixed noise of the sample grids)
RESUME_MUST_MATCH = ("dataset", "train_size", "batch_size", "seed", "lr", "beta1", "d_steps", "g_loss")
RESUME_KEYS = MODEL_KEYS + ("arch", "iter", "epoch_iter", "rng", "train_images") + tuple(
    "config." + k for k in RESUME_MUST_MATCH)
RESUME_ARRAYS = tuple(f"history.{k}" for k in HISTORY_KEYS)


@dataclass
class GANConfig(RunConfig):
    """Everything a GAN run depends on (the CLI flags of ``fastconv train gan``)."""
    model: str = "dcgan"
    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-4
    beta1: float = 0.5
    nz: int = 100
    width: int = 64                    # DCGAN: ngf = ndf
    g_hidden: list = field(default_factory=lambda: [256, 512])   # MLP G hidden sizes
    d_hidden: list = field(default_factory=lambda: [512, 256])   # MLP D hidden sizes
    d_steps: int = 1                   # k: D updates per G update
    g_loss: str = "nonsat"
    out: str = "runs/gan"
    sample_every: int = 500
    n_samples: int = 64
    iterations: int | None = None      # stop after this many iterations in all (replaces epochs)


# ---------------------------------------------------------------------------------------------
# models

def _normal_init(model, rng):
    """DCGAN's initialisation: conv/linear weights N(0, 0.02), BN scale N(1, 0.02), biases 0."""
    for _, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight.data, rng, std=0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias.data)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            nn.init.normal_(m.weight.data, rng, mean=1.0, std=0.02)
            nn.init.zeros_(m.bias.data)


def build_dcgan(nz=100, width=64, image_shape=(1, 28, 28), rng=None):
    """DCGAN for 28x28 (DESIGN.md), ``width`` = 64 gives the stated sizes.

    G: Linear nz->2w*7*7, BN, ReLU, ConvT 2w->w 4/2/1, BN, ReLU, ConvT w->C 4/2/1, Tanh.
    D: Conv C->w 4/2/1, LeakyReLU .2, Conv w->2w 4/2/1, BN, LeakyReLU .2, Linear 2w*7*7->1.
    Layers followed by BN have no bias (BN's shift replaces it).
    """
    c, h, w = image_shape
    if h % 4 or w % 4:
        raise ValueError(f"image_shape: got {tuple(image_shape)}, expected H and W divisible by 4 for DCGAN")
    h4, w4, w2 = h // 4, w // 4, 2 * width
    G = nn.Sequential(
        nn.Linear(nz, w2 * h4 * w4, bias=False, rng=rng), nn.BatchNorm1d(w2 * h4 * w4), nn.ReLU(),
        nn.Unflatten((w2, h4, w4)),
        nn.ConvTranspose2d(w2, width, 4, stride=2, padding=1, bias=False, rng=rng), nn.BatchNorm2d(width), nn.ReLU(),
        nn.ConvTranspose2d(width, c, 4, stride=2, padding=1, rng=rng), nn.Tanh())
    D = nn.Sequential(
        nn.Conv2d(c, width, 4, stride=2, padding=1, rng=rng), nn.LeakyReLU(0.2),
        nn.Conv2d(width, w2, 4, stride=2, padding=1, bias=False, rng=rng), nn.BatchNorm2d(w2), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(w2 * h4 * w4, 1, rng=rng))
    init_rng = rng if rng is not None else np.random.default_rng()
    _normal_init(G, init_rng)
    _normal_init(D, init_rng)
    return G, D


def build_mlp_gan(nz=100, g_hidden=(256, 512), d_hidden=(512, 256), image_shape=(1, 28, 28), rng=None):
    """The original fully connected GAN: G noise -> ReLU hidden layers -> tanh image; D image ->
    LeakyReLU(0.2) hidden layers -> one logit. Weights He-normal, biases 0."""
    size = int(np.prod(image_shape))
    g_layers, f = [], nz
    for u in parse_int_list(g_hidden, "g_hidden"):
        g_layers += [nn.Linear(f, u, rng=rng), nn.ReLU()]
        f = u
    g_layers += [nn.Linear(f, size, rng=rng), nn.Tanh(), nn.Unflatten(tuple(image_shape))]
    d_layers, f = [nn.Flatten()], size
    for u in parse_int_list(d_hidden, "d_hidden"):
        d_layers += [nn.Linear(f, u, rng=rng), nn.LeakyReLU(0.2)]
        f = u
    d_layers.append(nn.Linear(f, 1, rng=rng))
    return nn.Sequential(*g_layers), nn.Sequential(*d_layers)


def build_gan(arch: dict, rng=None):
    if arch["model"] == "dcgan":
        return build_dcgan(arch["nz"], arch["width"], tuple(arch["image_shape"]), rng=rng)
    if arch["model"] == "mlp":
        return build_mlp_gan(arch["nz"], arch["g_hidden"], arch["d_hidden"], tuple(arch["image_shape"]), rng=rng)
    raise ValueError(f"model: got {arch['model']!r}, expected one of {', '.join(map(repr, MODELS))}")


def arch_of(cfg: GANConfig, image_shape) -> dict:
    arch = {"model": cfg.model, "nz": int(cfg.nz), "image_shape": [int(s) for s in image_shape]}
    if cfg.model == "dcgan":
        arch["width"] = int(cfg.width)
    else:
        arch["g_hidden"] = parse_int_list(cfg.g_hidden, "g_hidden")
        arch["d_hidden"] = parse_int_list(cfg.d_hidden, "d_hidden")
    return arch


def generator_from_checkpoint(path: str, device: str = "cpu", kernels: str | None = None):
    """(G in eval mode, metadata) from a GAN checkpoint."""
    tensors, meta = load_checkpoint(path, kind="gan", keys=MODEL_KEYS)
    require_keys(meta, ARCH_KEYS.get(meta["arch"]["model"], ()), path)
    G, _ = build_gan(meta["arch"], rng=np.random.default_rng(0))
    G.load_state_dict(split_prefix(tensors, "G."))
    G.to(device, kernels=kernels)
    return G.eval(), meta


def noise(rng: np.random.Generator, n: int, nz: int, xp=np):
    """n noise vectors z ~ N(0, I), float32 (n, nz), drawn on the host (same numbers on CPU and GPU)."""
    return xp.asarray(rng.standard_normal((n, nz), dtype=np.float32))


def generate(G, z, path: str | None = None, nrow: int | None = None):
    """G(z) in eval mode (running BN statistics, no side effects); written as a PNG grid if path is given."""
    was = G.training
    G.eval()
    images = G.forward(z)
    G.train(was)
    if path is not None:
        save_grid(images, path, nrow=nrow, value_range=(-1.0, 1.0))
    return images


# ---------------------------------------------------------------------------------------------
# training

def _prepare(cfg: GANConfig) -> GANConfig:
    if cfg.dry_run:  # CI smoke run: fake data, two tiny iterations, every output still written
        cfg.dataset, cfg.epochs = "fake", min(cfg.epochs, 1)
        cfg.batch_size = min(cfg.batch_size, 8)
        cfg.train_size = 2 * cfg.batch_size * cfg.d_steps
        cfg.sample_every, cfg.n_samples = 1, min(cfg.n_samples, 16)
        cfg.width = min(cfg.width, 8)
        cfg.iterations = None if cfg.iterations is None else min(cfg.iterations, 2)
        cfg.g_hidden, cfg.d_hidden = [32], [32]
    if cfg.model not in MODELS:
        raise ValueError(f"model: got {cfg.model!r}, expected one of {', '.join(map(repr, MODELS))}")
    if cfg.g_loss not in G_LOSSES:
        raise ValueError(f"g_loss: got {cfg.g_loss!r}, expected one of {', '.join(map(repr, G_LOSSES))}")
    for name in ("epochs", "batch_size", "nz", "width", "d_steps", "sample_every", "n_samples", "log_every"):
        check_positive(getattr(cfg, name), name)
    check_positive(cfg.lr, "lr", float)
    if not 0.0 <= cfg.beta1 < 1.0:
        raise ValueError(f"beta1: got {cfg.beta1!r}, expected a number in [0, 1)")
    if cfg.train_size is not None:
        check_positive(cfg.train_size, "train_size")
    if cfg.iterations is not None:
        check_positive(cfg.iterations, "iterations")
    return cfg


def _sigmoid_mean(xp, logits):
    return (1.0 / (1.0 + xp.exp(-logits))).mean()


def train_gan(cfg: GANConfig) -> dict:
    """Run (or resume) GAN training as ``cfg`` says; returns the summary also written to <out>/results.json."""
    from ..optim import Adam

    cfg = _prepare(cfg)
    require_extras()  # before any work: a missing safetensors/Pillow would otherwise show after an epoch
    writable_dir(cfg.out, "out")
    device = resolve_device(cfg.device, cfg.kernels)
    # eager only for now: fastconv.graph.StepGraph captures the DCGAN step (tests/test_graph_emu.py),
    # but this loop draws its noise on the host and sums D(x), D(G(z)) with CuPy every step
    use_graph(cfg.graph, device, "the GAN trainers do not replay their step as a CUDA graph yet")
    xp = xp_for(device)
    data = fake_dataset(train=64, test=8) if cfg.dry_run else load_dataset(cfg.dataset, cfg.data_dir)
    x_train = to_float(data.train_images, "pm1")
    if cfg.train_size is not None:
        x_train = x_train[:cfg.train_size]
    per_iter = cfg.batch_size * cfg.d_steps
    if len(x_train) < per_iter:
        raise ValueError(f"batch_size: got {cfg.batch_size} with d_steps {cfg.d_steps}, but the training set has "
                         f"{len(x_train)} images; expected batch_size * d_steps <= {len(x_train)}")
    say(f"data: {data.describe()}" + (f"; training on the first {len(x_train)}" if cfg.train_size else ""))

    os.makedirs(cfg.out, exist_ok=True)
    ckpt = os.path.join(cfg.out, CHECKPOINT_NAME)
    arch = arch_of(cfg, data.image_shape)
    rng = np.random.default_rng(cfg.seed)
    G, D = build_gan(arch, rng=rng)
    fixed_z = noise(np.random.default_rng([cfg.seed, 1]), cfg.n_samples, cfg.nz)  # the same grid every time
    n_iters = (len(x_train) // cfg.batch_size) // cfg.d_steps  # iterations per epoch (>= 1, checked above)
    end_epoch = cfg.epochs if cfg.iterations is None else -(-cfg.iterations // n_iters)
    start_epoch, it, pos, order = 0, 0, 0, None  # pos: iterations done in a partial epoch, order: its shuffle
    history = {k: [] for k in HISTORY_KEYS}
    opt_states = None
    src = resume_path(cfg.resume, cfg.out)
    if src is not None:
        tensors, meta = load_checkpoint(src, kind="gan", keys=RESUME_KEYS, arrays=RESUME_ARRAYS)
        if meta["arch"] != arch:
            raise ValueError(f"resume: checkpoint {src!r} has architecture {meta['arch']}, but the flags give {arch}; "
                             "expected the same --model/--nz/--width and data set")
        check_resume_config(src, meta, cfg, RESUME_MUST_MATCH, len(x_train))
        pos = meta["epoch_iter"]
        if pos:
            if "order" not in tensors:
                raise CheckpointError(f"checkpoint: {src!r} stopped {pos} iterations into an epoch but has no array "
                                      "'order'; expected the epoch's shuffle order to continue it")
            order = tensors["order"]
        G.load_state_dict(split_prefix(tensors, "G."))
        D.load_state_dict(split_prefix(tensors, "D."))
        opt_states = split_prefix(tensors, "optG."), split_prefix(tensors, "optD.")
        history = {k: [float(v) for v in tensors[f"history.{k}"]] for k in HISTORY_KEYS}
        rng = rng_from_state(meta["rng"])
        start_epoch, it = meta["epoch"], meta["iter"]
        say(f"resumed from {src}: epoch {start_epoch}" + (f" and {pos} iterations" if pos else "")
            + f", iteration {it}")
        if cfg.iterations is not None and it >= cfg.iterations:
            say(f"checkpoint already has {it} iterations >= --iterations {cfg.iterations}; nothing to train")
        elif cfg.iterations is None and start_epoch >= cfg.epochs:
            say(f"checkpoint already has {start_epoch} epochs >= --epochs {cfg.epochs}; nothing to train")
    G.to(device, kernels=cfg.kernels)
    D.to(device, kernels=cfg.kernels)
    opt_g = Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    opt_d = Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
    if opt_states is not None:
        opt_g.load_state_dict(opt_states[0])
        opt_d.load_state_dict(opt_states[1])
        opt_g.lr = opt_d.lr = float(cfg.lr)  # the checkpoint's, or a new rate with --allow-lr-change
    bce = nn.BCEWithLogitsLoss(kernels=cfg.kernels)
    fixed_zd = xp.asarray(fixed_z)
    ones = xp.ones((cfg.batch_size, 1), np.float32)
    zeros = xp.zeros((cfg.batch_size, 1), np.float32)
    samples_dir = os.path.join(cfg.out, "samples")
    xd = xp.asarray(x_train)
    sync_every = 1 if device == "cpu" else cfg.log_every
    say(f"{cfg.model}: G {sum(int(p.data.size) for p in G.parameters())} and D "
        f"{sum(int(p.data.size) for p in D.parameters())} parameters on {device}; Adam lr {cfg.lr} beta1 {cfg.beta1}, "
        f"batch {cfg.batch_size}, {cfg.d_steps} D step(s) per G step, {cfg.g_loss} G loss")

    keys = ("d_loss", "g_loss", "d_x", "d_g_z1", "d_g_z2")
    epochs_done = start_epoch
    with MetricsLog(os.path.join(cfg.out, METRICS_NAME), append=src is not None) as log:
        for epoch in range(start_epoch, end_epoch):
            if cfg.iterations is not None and it >= cfg.iterations:
                break
            t0 = time.perf_counter()
            first = pos
            if order is None:  # a new epoch: one permutation drawn from rng (a resumed partial one keeps its own)
                order = rng.permutation(len(x_train))
            order_d = order if device == "cpu" else xp.asarray(order)  # index on the device
            dev = dict.fromkeys(keys, 0)   # sums on the device since the last sync
            host = dict.fromkeys(keys, 0.0)  # sums on the host since the last log line
            n_dev = n_host = 0
            stopped = False
            with progress((n_iters - first) * per_iter, f"epoch {epoch + 1}/{end_epoch}", cfg.progress) as bar:
                for i in range(first, n_iters):
                    # (1) Update D: maximize log D(x) + log(1 - D(G(z)))
                    for j in range(cfg.d_steps):
                        b = (i * cfg.d_steps + j) * cfg.batch_size
                        real = xd[order_d[b:b + cfg.batch_size]]
                        D.zero_grad()
                        logits_real = D.forward(real)
                        loss_real = bce.forward(logits_real, ones)
                        D.backward(bce.backward(), input_grad=False)
                        fake = G.forward(noise(rng, cfg.batch_size, cfg.nz, xp))  # G is not updated here
                        logits_fake = D.forward(fake)
                        loss_fake = bce.forward(logits_fake, zeros)
                        D.backward(bce.backward(), input_grad=False)  # grads add to the real batch's
                        opt_d.step()
                    # (2) Update G: minimise -log D(G(z)) (nonsat) or log(1 - D(G(z))) (minimax)
                    G.zero_grad()
                    logits = D.forward(fake)  # the last fake batch, scored by the updated D
                    if cfg.g_loss == "nonsat":
                        loss_g = bce.forward(logits, ones)
                        dlogits = bce.backward()
                    else:  # log(1 - sigmoid(l)) = -BCE(l, 0)
                        loss_g = -bce.forward(logits, zeros)
                        dlogits = -bce.backward()
                    G.backward(D.backward(dlogits), input_grad=False)
                    opt_g.step()
                    it += 1
                    stopped = cfg.iterations is not None and it >= cfg.iterations
                    flush = stopped or i == n_iters - 1  # the epoch's (or the run's) last iteration

                    for k, v in zip(keys, (loss_real + loss_fake, loss_g, _sigmoid_mean(xp, logits_real),
                                           _sigmoid_mean(xp, logits_fake), _sigmoid_mean(xp, logits))):
                        dev[k] = dev[k] + v
                    n_dev += 1
                    if it % sync_every == 0 or flush:
                        for k in keys:
                            host[k] += to_host_float(dev[k])
                            dev[k] = 0
                        n_host, n_dev = n_host + n_dev, 0
                        for k in ("d_loss", "g_loss"):
                            check_finite(host[k] / n_host, k.replace("_", " "), f"epoch {epoch + 1}, iteration {it}",
                                         ckpt)
                    if (it % cfg.log_every == 0 or flush) and n_host:
                        m = {k: host[k] / n_host for k in keys}
                        log.write(kind="train", epoch=epoch + 1, iter=it, **m)
                        for hk, v in zip(HISTORY_KEYS, (it, m["d_loss"], m["g_loss"], m["d_x"], m["d_g_z1"])):
                            history[hk].append(float(v))
                        bar.set_postfix(D=f"{m['d_loss']:.3f}", G=f"{m['g_loss']:.3f}", Dx=f"{m['d_x']:.2f}",
                                        DGz=f"{m['d_g_z1']:.2f}")
                        host, n_host = dict.fromkeys(keys, 0.0), 0
                    if it % cfg.sample_every == 0:
                        generate(G, fixed_zd, os.path.join(samples_dir, f"iter_{it:06d}.png"))
                    bar.update(per_iter)
                    if stopped:
                        break
            seconds = time.perf_counter() - t0
            done_here = i + 1 - first  # iterations run in this epoch by this process
            pos = 0 if i == n_iters - 1 else i + 1
            epochs_done = epoch + (pos == 0)
            meta = {"kind": "gan", "arch": arch, "epoch": epochs_done, "iter": it, "epoch_iter": pos, "step": it,
                    "rng": rng_state(rng), "dataset": cfg.dataset, "train_images": len(x_train),
                    "config": _jsonable(cfg)}
            tensors = {**with_prefix(G.state_dict(), "G."), **with_prefix(D.state_dict(), "D."),
                       **with_prefix(opt_g.state_dict(), "optG."), **with_prefix(opt_d.state_dict(), "optD.")}
            tensors.update({f"history.{k}": np.asarray(history[k], np.float64) for k in HISTORY_KEYS})
            if pos:  # stopped inside an epoch: keep its shuffle so that a resume continues it exactly
                tensors["order"] = np.asarray(order, np.int64)
            save_checkpoint(ckpt, tensors, meta)
            if not pos:
                order = None
            last = {k: history[k][-1] for k in HISTORY_KEYS} if history["iter"] else {}
            log.write(kind="epoch", epoch=epoch + 1, iter=it, seconds=seconds, partial=bool(pos),
                      images_per_s=done_here * per_iter / seconds, **{k: v for k, v in last.items() if k != "iter"})
            where = f"epoch {epoch + 1}/{end_epoch}" if not pos else \
                f"stopped at --iterations {cfg.iterations}, {pos}/{n_iters} iterations into epoch {epoch + 1}"
            say(f"{where}: iteration {it}, D loss {last['d_loss']:.4f}, G loss "
                f"{last['g_loss']:.4f}, D(x) {last['d_x']:.3f}, D(G(z)) {last['d_g_z']:.3f} ({seconds:.1f} s, "
                f"{done_here * per_iter / seconds:.0f} real img/s)")
            if stopped:
                break

    final = os.path.join(cfg.out, "samples.png")
    generate(G, fixed_zd, final)
    if history["iter"]:
        plot_curves(os.path.join(cfg.out, "losses.png"),
                    {"D loss": (history["iter"], history["d_loss"]), "G loss": (history["iter"], history["g_loss"])},
                    title=f"{cfg.model} losses", xlabel="iteration")
        plot_curves(os.path.join(cfg.out, "d_outputs.png"),
                    {"mean D(x)": (history["iter"], history["d_x"]),
                     "mean D(G(z))": (history["iter"], history["d_g_z"])},
                    title="discriminator outputs", xlabel="iteration")
    result = {"model": cfg.model, "epochs": epochs_done, "epoch_iter": pos, "iter": it,
              "device": device, "dataset": data.describe(), "samples": final, "checkpoint": ckpt,
              **({k: history[k][-1] for k in HISTORY_KEYS if k != "iter"} if history["iter"] else {})}
    with open(os.path.join(cfg.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    return result


def _jsonable(cfg) -> dict:
    d = asdict(cfg)
    d["resume"] = None if d["resume"] in (None, False) else str(d["resume"])
    return d
