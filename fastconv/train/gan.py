"""Train a generative adversarial network on 28x28 images: the original MLP GAN, DCGAN, or the
class-conditional DCGAN (cdcgan: G and D also take the class label; fastconv.train.cdcgan).

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

For cdcgan the real batch comes with its labels, and each fake batch asks G for labels drawn
uniformly (after its noise, from the same generator); D scores each batch against its labels.

One iteration is fastconv.train.gan_step.GANStep: on a GPU it is replayed as one CUDA graph
(``--graph``, default on; off runs the same kernels eagerly). Iterations take full batches only
(the rest of an epoch's shuffle is left out), so every one can replay the graph.

A fixed noise batch is rendered to a PNG grid every ``sample_every`` iterations and at the end
(cdcgan: a 10 x 10 grid, one row per class, labelled with the class names);
losses, mean D(x) and mean D(G(z)) are logged; a checkpoint is written after every epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..checkpoint import CheckpointError, load_checkpoint, require_keys, rng_from_state, rng_state, split_prefix, \
    with_prefix
from ..data import CLASS_NAMES, fake_dataset, fingerprint, load_dataset, to_float
from .common import (RunConfig, allocating, check_common, check_positive, config_json, first_n, require_extras,
                     resolve_device, say, use_graph, xp_for)
from .gan_models import (CLASSES, MODELS, arch_of, build_cdcgan, build_dcgan, build_gan,  # noqa: F401 (API)
                         build_mlp_gan, grid_labels, is_conditional, noise, random_labels)
from .gan_step import GANStep
from .images import save_grid
from .progress import progress
from .run import Run

G_LOSSES = ("nonsat", "minimax")
HISTORY_KEYS = ("iter", "d_loss", "g_loss", "d_x", "d_g_z")
# metadata a GAN checkpoint must hold: to rebuild G (sample), and to resume a run
MODEL_KEYS = {"arch.model": str, "arch.nz": int, "arch.image_shape": list, "epoch": int}
# settings that change the trained weights (seed: also the fixed noise of the sample grids)
RESUME_MUST_MATCH = ("dataset", "train_size", "batch_size", "seed", "lr", "beta1", "d_steps", "g_loss")
RESUME_KEYS = {**MODEL_KEYS, "arch": dict, "iter": int, "epoch_iter": int, "rng": dict, "train_images": int,
               "data_sha256": str, **{"config." + k: None for k in RESUME_MUST_MATCH}}
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
    sample_every: int = 500
    n_samples: int = 64
    iterations: int | None = None      # stop after this many iterations in all (replaces epochs)


def generator_from_checkpoint(path: str, device: str = "cpu", kernels: str | None = None):
    """(G in eval mode, metadata) from a GAN checkpoint."""
    tensors, meta = load_checkpoint(path, kind="gan", keys=MODEL_KEYS)
    require_keys(meta, {f"arch.{f}": None for f in MODELS.get(meta["arch"]["model"], (None, ()))[1]}, path)
    G, _ = build_gan(meta["arch"], rng=np.random.default_rng(0))
    G.load_state_dict(split_prefix(tensors, "G."))
    G.to(device, kernels=kernels)
    return G.eval(), meta


def generate(G, z, path: str | None = None, nrow: int | None = None, labels=None, row_labels=None):
    """G(z) (G(z, labels) for a conditional G) in eval mode (running BN statistics, no side effects);
    written as a PNG grid if path is given, ``row_labels`` written left of the rows."""
    was = G.training
    G.eval()
    images = G.forward(z) if labels is None else G.forward(z, labels)
    G.train(was)
    if path is not None:
        save_grid(images, path, nrow=nrow, value_range=(-1.0, 1.0), row_labels=row_labels)
    return images


class Grid:
    """The fixed sample grid of a run: noise (and, for a conditional G, one row of each class)."""

    def __init__(self, G, cfg, xp, class_names):
        rng = np.random.default_rng([cfg.seed, 1])  # the same grid every time
        self.labels = self.names = self.nrow = None
        if is_conditional(G):
            self.nrow = CLASSES
            self.labels, self.names = xp.asarray(grid_labels(CLASSES, CLASSES)), list(class_names)
            self.z = xp.asarray(noise(rng, CLASSES * CLASSES, cfg.nz))
        else:
            self.z = xp.asarray(noise(rng, cfg.n_samples, cfg.nz))

    def write(self, G, path):
        return generate(G, self.z, path, nrow=self.nrow, labels=self.labels, row_labels=self.names)


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
    check_common(cfg)
    for name in ("epochs", "nz", "width", "d_steps", "sample_every", "n_samples"):
        check_positive(getattr(cfg, name), name)
    if not 0.0 <= cfg.beta1 < 1.0:
        raise ValueError(f"beta1: got {cfg.beta1!r}, expected a number in [0, 1)")
    if cfg.iterations is not None:
        check_positive(cfg.iterations, "iterations")
    return cfg


def train_gan_epoch(step: GANStep, data, order, first: int, n_iters: int, cfg: GANConfig, rng, run: Run, bar,
                    history: dict, grid: Grid, sync_every: int) -> int:
    """Iterations ``first``..n_iters-1 of one epoch over the shuffle ``order`` (on the data's
    device; stopping early at cfg.iterations); run.step counts iterations. ``data`` is (images,
    labels int32) on the device, labels used by a conditional G only. The statistics are read
    back (losses checked finite) every ``sync_every`` iterations and at the end, and logged every
    cfg.log_every. Returns the index after the last iteration run."""
    per = cfg.batch_size * cfg.d_steps
    i = first
    while i < n_iters and not (cfg.iterations is not None and run.step >= cfg.iterations):
        step(*step.inputs(rng, *data, order[i * per:(i + 1) * per]))
        run.step, i = run.step + 1, i + 1
        flush = i == n_iters or (cfg.iterations is not None and run.step >= cfg.iterations)
        if run.step % sync_every == 0 or flush:
            means = step.sync()
            for k in ("d_loss", "g_loss"):
                run.check_loss(means[k], k.replace("_", " "))
        if (run.step % cfg.log_every == 0 or flush) and step.host_count:
            m = step.take()
            run.log(kind="train", epoch=run.epoch, iter=run.step, **m)
            for hk, v in zip(HISTORY_KEYS, (run.step, m["d_loss"], m["g_loss"], m["d_x"], m["d_g_z1"])):
                history[hk].append(float(v))
            bar.set_postfix(D=f"{m['d_loss']:.3f}", G=f"{m['g_loss']:.3f}", Dx=f"{m['d_x']:.2f}",
                            DGz=f"{m['d_g_z1']:.2f}")
        if run.step % cfg.sample_every == 0:
            grid.write(step.G, run.path(f"samples/iter_{run.step:06d}.png"))
        bar.update(per)
    return i


def _load_data(cfg: GANConfig):
    """(training images in [-1, 1], their labels, the data set, its fingerprint)."""
    data = fake_dataset(train=64, test=8) if cfg.dry_run else load_dataset(cfg.dataset, cfg.data_dir)
    images, labels = first_n(cfg, (data.train_images, data.train_labels), len(data.train_labels))
    per_iter = cfg.batch_size * cfg.d_steps
    if len(images) < per_iter:
        raise ValueError(f"batch_size: got {cfg.batch_size} with d_steps {cfg.d_steps}, but the training set has "
                         f"{len(images)} images; expected batch_size * d_steps <= {len(images)}")
    say(f"data: {data.describe()}" + (f"; training on the first {len(images)}" if cfg.train_size else ""))
    return to_float(images, "pm1"), labels, data, fingerprint(images, labels)


def train_gan(cfg: GANConfig) -> dict:
    """Run (or resume) GAN training as ``cfg`` says; returns the summary also written to <out>/results.json."""
    from ..optim import Adam

    cfg = _prepare(cfg)
    require_extras()  # before any work: a missing safetensors/Pillow would otherwise show after an epoch
    device = resolve_device(cfg.device, cfg.kernels)
    graphed = use_graph(cfg.graph, device)  # a --graph error before any work
    xp = xp_for(device)
    with Run(cfg, "gan", cfg.model) as run:
        x_train, y_train, data, data_sha = _load_data(cfg)
        arch = arch_of(cfg, data.image_shape)
        rng = np.random.default_rng(cfg.seed)
        G, D = allocating("the networks", lambda: build_gan(arch, rng=rng))
        grid = Grid(G, cfg, xp, CLASS_NAMES[data.name])
        n_iters = (len(x_train) // cfg.batch_size) // cfg.d_steps  # iterations per epoch (>= 1, checked above)
        end_epoch = cfg.epochs if cfg.iterations is None else -(-cfg.iterations // n_iters)
        opt_g = Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        opt_d = Adam(D.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        # pos: iterations done in a partial epoch; order: that epoch's shuffle
        pos, order, history = 0, None, {k: [] for k in HISTORY_KEYS}
        if run.source is not None:
            rng, pos, order, history = _resume(run, cfg, G, D, opt_g, opt_d, arch, len(x_train), data_sha)
        G.to(device, kernels=cfg.kernels)
        D.to(device, kernels=cfg.kernels)
        step = GANStep(G, D, opt_g, opt_d, cfg.batch_size, cfg.nz, cfg.d_steps, cfg.g_loss, graphed, cfg.kernels)
        # int32 labels, the layers' type, converted once: a captured step may not convert them
        xd = allocating("the data on the device",
                        lambda: (xp.asarray(x_train), xp.asarray(y_train.astype(np.int32))))
        say(f"{cfg.model}: G {sum(int(p.data.size) for p in G.parameters())} and D "
            f"{sum(int(p.data.size) for p in D.parameters())} parameters on {device}; Adam lr {cfg.lr} beta1 "
            f"{cfg.beta1}, batch {cfg.batch_size}, {cfg.d_steps} D step(s) per G step, {cfg.g_loss} G loss"
            + (", the step replayed as a CUDA graph" if graphed else ""))
        done = run.epoch  # complete epochs
        while done < end_epoch and not (cfg.iterations is not None and run.step >= cfg.iterations):
            run.epoch, first, t0 = done + 1, pos, time.perf_counter()
            if order is None:  # a new epoch: one permutation drawn from rng (a resumed partial one keeps its own)
                order = rng.permutation(len(x_train))
            with progress((n_iters - first) * cfg.batch_size * cfg.d_steps, f"epoch {run.epoch}/{end_epoch}",
                          cfg.progress, cfg.batch_size * cfg.d_steps, cfg.progress_seconds) as bar:
                pos = train_gan_epoch(step, xd, xp.asarray(order), first, n_iters, cfg, rng, run, bar, history, grid,
                                      1 if device == "cpu" else cfg.log_every)
            pos, done = (0, done + 1) if pos == n_iters else (pos, done)
            _save(run, cfg, arch, (G, D, opt_g, opt_d), history, rng, order, pos, done, len(x_train), data_sha)
            order = order if pos else None
            _report(run, cfg, history, pos, n_iters, end_epoch, (pos or n_iters) - first, time.perf_counter() - t0)
        return _finish(run, cfg, G, grid, history, done, pos, n_iters, device, data)


def _resume(run: Run, cfg: GANConfig, G, D, opt_g, opt_d, arch: dict, train_images: int, data_sha: str):
    """Load the checkpoint into G, D and their optimizers after the must-match checks; returns
    (rng, iterations into the epoch, its shuffle order or None, history)."""
    tensors, meta = run.resume(RESUME_KEYS, RESUME_ARRAYS)
    run.check_same_run(meta, arch, RESUME_MUST_MATCH, train_images, data_sha)
    pos = meta["epoch_iter"]
    if pos and "order" not in tensors:
        raise CheckpointError(f"checkpoint: {run.source!r} stopped {pos} iterations into an epoch but has no array "
                              "'order'; expected the epoch's shuffle order to continue it")
    for module, prefix in ((G, "G."), (D, "D."), (opt_g, "optG."), (opt_d, "optD.")):
        module.load_state_dict(split_prefix(tensors, prefix))
    opt_g.lr = opt_d.lr = float(cfg.lr)  # the checkpoint's, or a new rate with --allow-lr-change
    run.epoch, run.step = meta["epoch"], meta["iter"]
    say(f"resumed from {run.source}: epoch {run.epoch}" + (f" and {pos} iterations" if pos else "")
        + f", iteration {run.step}")
    if cfg.iterations is not None and run.step >= cfg.iterations:
        say(f"checkpoint already has {run.step} iterations >= --iterations {cfg.iterations}; nothing to train")
    elif cfg.iterations is None and run.epoch >= cfg.epochs:
        say(f"checkpoint already has {run.epoch} epochs >= --epochs {cfg.epochs}; nothing to train")
    history = {k: [float(v) for v in tensors[f"history.{k}"]] for k in HISTORY_KEYS}
    return rng_from_state(meta["rng"]), pos, (tensors["order"] if pos else None), history


def _save(run: Run, cfg, arch, nets, history, rng, order, pos, done, train_images, data_sha) -> None:
    """Checkpoint after an epoch, or inside one at --iterations (then with the epoch's shuffle order)."""
    G, D, opt_g, opt_d = nets
    meta = {"kind": "gan", "arch": arch, "epoch": done, "iter": run.step, "epoch_iter": pos, "step": run.step,
            "rng": rng_state(rng), "dataset": cfg.dataset, "train_images": train_images, "data_sha256": data_sha,
            "config": config_json(cfg)}
    tensors = {**with_prefix(G.state_dict(), "G."), **with_prefix(D.state_dict(), "D."),
               **with_prefix(opt_g.state_dict(), "optG."), **with_prefix(opt_d.state_dict(), "optD.")}
    tensors.update({f"history.{k}": np.asarray(history[k], np.float64) for k in HISTORY_KEYS})
    if pos:  # stopped inside an epoch: keep its shuffle so that a resume continues it exactly
        tensors["order"] = np.asarray(order, np.int64)
    run.save(tensors, meta)


def _report(run: Run, cfg, history, pos, n_iters, end_epoch, iters_here: int, seconds: float) -> None:
    last = {k: history[k][-1] for k in HISTORY_KEYS}
    rate = iters_here * cfg.batch_size * cfg.d_steps / seconds
    run.log(kind="epoch", epoch=run.epoch, iter=run.step, seconds=seconds, partial=bool(pos), images_per_s=rate,
            **{k: v for k, v in last.items() if k != "iter"})
    where = f"epoch {run.epoch}/{end_epoch}" if not pos else \
        f"stopped at --iterations {cfg.iterations}, {pos}/{n_iters} iterations into epoch {run.epoch}"
    say(f"{where}: iteration {run.step}, D loss {last['d_loss']:.4f}, G loss {last['g_loss']:.4f}, mean D(x) "
        f"{last['d_x']:.3f}, mean D(G(z)) {last['d_g_z']:.3f} over the last {_window(history)} iterations "
        f"({seconds:.1f} s, {rate:.0f} real img/s)")


def _window(history) -> int:
    """How many iterations the newest history point averages (--log-every, or fewer at a stop)."""
    it = history["iter"]
    return int(it[-1] - it[-2]) if len(it) > 1 else int(it[-1])


def _finish(run: Run, cfg, G, grid: Grid, history, done, pos, n_iters, device, data) -> dict:
    final = run.path("samples.png")
    grid.write(G, final)
    it = history["iter"]
    if it:
        run.plot("losses.png", {"D loss": (it, history["d_loss"]), "G loss": (it, history["g_loss"])},
                 title=f"{cfg.model} losses (mean over each --log-every window)", xlabel="iteration",
                 ylabel="BCE loss")
        run.plot("d_outputs.png", {"mean D(x)": (it, history["d_x"]), "mean D(G(z))": (it, history["d_g_z"])},
                 title=f"{cfg.model} discriminator outputs (mean over each --log-every window)", xlabel="iteration",
                 ylabel="D output")
    result = {"model": cfg.model, "epochs_completed": done, "epoch_iter": pos, "iterations_per_epoch": n_iters,
              "iter": run.step, "device": device, "dataset": data.describe(), "samples": final,
              "checkpoint": run.checkpoint}
    if it:
        result.update({k: history[k][-1] for k in HISTORY_KEYS if k != "iter"},
                      means_over_iterations=_window(history))
    return run.finish(result)
