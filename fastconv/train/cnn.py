"""Train and evaluate a LeNet-style image classifier (MNIST-layout data, 10 classes).

The default network is the project's LeNet: conv 1->32 5x5 p2, ReLU, maxpool 2; conv 32->64 5x5
p2, ReLU, maxpool 2; Linear 3136->256, ReLU; Linear 256->10. ``channels`` and ``hidden`` change
its depth and width; ``batchnorm`` adds BatchNorm after every conv and hidden Linear, ``dropout``
a Dropout after every hidden ReLU. Training options: ``augment`` (random shifts of up to 2 pixels
and, where the data set allows, horizontal flips; fastconv.data.augment) and a learning-rate
``schedule`` (constant, step, cosine; fastconv.schedule) set every step. One epoch = one seeded
shuffle of the training set (augmentation draws from the same generator); after each epoch the
test accuracy is measured, a JSON line is logged and a checkpoint is written, so ``resume``
continues exactly where the run stopped (bitwise on the CPU).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .. import nn
from ..argcheck import real
from ..backend import device_of, to_device
from ..checkpoint import load_checkpoint, rng_from_state, rng_state, split_prefix, with_prefix
from ..data import fake_dataset, fingerprint, iterate_batches, load_dataset, to_float
from ..data.augment import augment, flips_allowed
from ..graph import StepGraph
from ..schedule import SCHEDULES, LRSchedule
from .common import (RunConfig, allocating, check_common, check_fits, check_nonnegative, check_positive, config_json,
                     first_n, parse_int_list, require_extras, resolve_device, say, to_host_float, use_graph, xp_for)
from .progress import progress
from .run import Run

OPTIMIZERS = ("sgd", "adam")
# metadata a CNN checkpoint must hold: to rebuild the model (eval), and to resume a run
MODEL_KEYS = {"arch.channels": list, "arch.hidden": list, "arch.kernel_size": int, "arch.in_shape": list,
              "arch.classes": int, "epoch": int}
# settings that change the trained weights: a resumed run must use the checkpoint's values
RESUME_MUST_MATCH = ("dataset", "train_size", "batch_size", "seed", "optimizer", "lr", "momentum", "weight_decay",
                     "augment", "schedule", "lr_step", "lr_gamma")
SHIFT = 2  # --augment: largest shift in pixels
RESUME_KEYS = {**MODEL_KEYS, "arch": dict, "step": int, "rng": dict, "history": dict, "train_images": int,
               "data_sha256": str, **{"config." + k: None for k in RESUME_MUST_MATCH}}
HISTORY_KEYS = ("epoch", "train_loss", "test_loss", "test_accuracy", "seconds")


@dataclass
class CNNConfig(RunConfig):
    """Everything a CNN run depends on (the CLI flags of ``fastconv train cnn``)."""
    epochs: int = 10
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 0.0
    channels: list = field(default_factory=lambda: [32, 64])
    hidden: list = field(default_factory=lambda: [256])
    kernel_size: int = 5
    test_batch_size: int = 250
    batchnorm: bool = False
    dropout: float = 0.0
    augment: bool = False
    schedule: str = "constant"         # "step": lr * lr_gamma every lr_step epochs; "cosine": to 0 at --epochs
    lr_step: float = 10.0
    lr_gamma: float = 0.1


# ---------------------------------------------------------------------------------------------
# model

def build_cnn(channels=(32, 64), hidden=(256,), kernel_size=5, in_shape=(1, 28, 28), classes=10,
              rng=None, batchnorm: bool = False, dropout: float = 0.0) -> nn.Sequential:
    """Conv(k x k, 'same' padding) -> [BatchNorm2d] -> ReLU -> MaxPool 2 for each entry of ``channels``,
    then Flatten, Linear -> [BatchNorm1d] -> ReLU -> [Dropout(dropout)] for each entry of ``hidden``,
    then Linear -> ``classes`` logits. Layers followed by BatchNorm have no bias (BN's shift replaces it)."""
    channels = parse_int_list(channels, "channels")
    hidden = parse_int_list(hidden, "hidden")
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: got {kernel_size!r}, expected an odd positive int ('same' padding)")
    c, h, w = in_shape
    convs = []  # (in, out) channels of each conv block
    for i, k in enumerate(channels):
        if h < 2 or w < 2:
            raise ValueError(f"channels: got {len(channels)} conv blocks, but a {in_shape[1]}x{in_shape[2]} image "
                             f"is {h}x{w} before block {i + 1}; expected at most {i} blocks")
        convs.append((c, k))
        c, h, w = k, h // 2, w // 2
    sizes = [c * h * w, *hidden, classes]  # Linear layers' in/out features
    count = sum(a * b * kernel_size ** 2 + b for a, b in convs) + sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    check_fits(4 * count, f"the model (--channels {','.join(map(str, channels))} --hidden "
                          f"{','.join(map(str, hidden))}: {count:,} float32 parameters)")
    dropout = real(dropout, "dropout", 0.0, 1.0, hi_open=True, what="a probability")
    init_rng = rng if rng is not None else np.random.default_rng()
    layers = []
    for a, b in convs:
        layers += [nn.Conv2d(a, b, kernel_size, padding=kernel_size // 2, bias=not batchnorm, rng=rng)]
        layers += [nn.BatchNorm2d(b)] if batchnorm else []
        layers += [nn.ReLU(), nn.MaxPool2d(2)]
    layers.append(nn.Flatten())
    for i, (a, b) in enumerate(zip(sizes, sizes[1:])):
        last = i == len(hidden)
        layers += [nn.Linear(a, b, bias=last or not batchnorm, rng=rng)]
        if not last:
            layers += ([nn.BatchNorm1d(b)] if batchnorm else []) + [nn.ReLU()]
            layers += [nn.Dropout(dropout, seed=int(init_rng.integers(2 ** 31)))] if dropout else []
    return nn.Sequential(*layers)


def make_optimizer(name: str, params, lr: float, momentum: float = 0.9, weight_decay: float = 0.0):
    from .. import optim
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer: got {name!r}, expected one of {', '.join(map(repr, OPTIMIZERS))}")


def arch_of(cfg: CNNConfig, in_shape) -> dict:
    return {"channels": parse_int_list(cfg.channels, "channels"), "hidden": parse_int_list(cfg.hidden, "hidden"),
            "kernel_size": int(cfg.kernel_size), "in_shape": [int(s) for s in in_shape], "classes": 10,
            # only when used: the plain LeNet's architecture (and its checkpoints) stay as they were
            **({"batchnorm": True} if cfg.batchnorm else {}),
            **({"dropout": float(cfg.dropout)} if cfg.dropout else {})}


def build_from_arch(arch: dict, rng=None) -> nn.Sequential:
    """The network an architecture dict names (checkpoints from before BatchNorm/Dropout lack those keys)."""
    return build_cnn(arch["channels"], arch["hidden"], arch["kernel_size"], tuple(arch["in_shape"]), arch["classes"],
                     rng=rng, batchnorm=arch.get("batchnorm", False), dropout=arch.get("dropout", 0.0))


def model_from_checkpoint(path: str, device: str = "cpu", kernels: str | None = None):
    """(model in eval mode, metadata) from a CNN checkpoint."""
    tensors, meta = load_checkpoint(path, kind="cnn", keys=MODEL_KEYS)
    model = build_from_arch(meta["arch"], rng=np.random.default_rng(0))
    model.load_state_dict(split_prefix(tensors, "model."))
    model.to(device, kernels=kernels)
    return model.eval(), meta


# ---------------------------------------------------------------------------------------------
# evaluation

def evaluate(model, x, y, batch_size: int = 250) -> tuple[float, float]:
    """(mean cross-entropy, accuracy in [0, 1]) over (x, y) in eval mode; one device sync at the end."""
    was_training = model.training
    model.eval()
    loss_fn = nn.CrossEntropyLoss(kernels=getattr(model, "kernels", None))
    loss_sum = correct = 0
    for xb, yb in iterate_batches(x, y, batch_size):
        logits = model.forward(xb)
        loss_sum = loss_sum + loss_fn.forward(logits, yb) * len(yb)
        correct = correct + (logits.argmax(axis=1) == yb).sum()
    model.train(was_training)
    n = len(y)
    return to_host_float(loss_sum) / n, to_host_float(correct) / n


# ---------------------------------------------------------------------------------------------
# training

def _prepare(cfg: CNNConfig) -> CNNConfig:
    if cfg.dry_run:  # CI smoke run: fake data, two tiny batches, every output still written
        cfg.dataset, cfg.epochs = "fake", min(cfg.epochs, 1)
        cfg.batch_size = min(cfg.batch_size, 8)
        cfg.train_size = 2 * cfg.batch_size
        cfg.test_batch_size = min(cfg.test_batch_size, 16)
    check_common(cfg)
    check_positive(cfg.epochs, "epochs")
    check_positive(cfg.test_batch_size, "test_batch_size")
    check_nonnegative(cfg.momentum, "momentum")
    check_nonnegative(cfg.weight_decay, "weight_decay")
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: got {cfg.optimizer!r}, expected one of {', '.join(map(repr, OPTIMIZERS))}")
    schedule(cfg)  # checks --schedule, --lr-step, --lr-gamma
    real(cfg.dropout, "dropout", 0.0, 1.0, hi_open=True, what="a probability")
    return cfg


def schedule(cfg: CNNConfig) -> LRSchedule:
    """The learning rate over the run's epochs (cosine: from --lr at the start to 0 at --epochs)."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"schedule: got {cfg.schedule!r}, expected one of {', '.join(map(repr, SCHEDULES))}")
    return LRSchedule(cfg.schedule, cfg.lr, total=cfg.epochs, step_size=cfg.lr_step, gamma=cfg.lr_gamma)


def train_step(model, opt, loss_fn, xb, yb):
    """One SGD/Adam step on a batch (xb [B,C,H,W] float32, yb [B] int32); returns the loss (device scalar)."""
    loss = loss_fn.forward(model.forward(xb), yb)
    opt.zero_grad()
    model.backward(loss_fn.backward(), input_grad=False)
    opt.step()
    return loss


def train_epoch(model, opt, loss_fn, x, y, cfg: CNNConfig, rng, run: Run, bar, sync_every: int,
                graph: StepGraph | None = None) -> float:
    """One pass over (x, y) in batches shuffled by ``rng``; returns the mean training loss.

    y holds int32 labels (the loss kernel's type; a captured step may not convert them). With a
    ``graph`` (a StepGraph of train_step) full batches replay it and the last, smaller batch of
    the epoch runs eagerly with the same kernels, so a graph run equals an eager run and resumes
    exactly. run.step counts steps; the loss is read back (and checked finite) every
    ``sync_every`` steps and at the end, and its running mean is logged every cfg.log_every steps.
    The learning rate follows cfg's schedule at every step (set before a replay: the graph reads
    the optimizer's device copy of it); with cfg.augment each batch is shifted (and flipped) on the host with draws from ``rng``, then
    moved to the batch's device.
    """
    model.train()
    run_sum, run_n, log_sum, log_n, ep_sum, ep_n = 0, 0, 0.0, 0, 0.0, 0
    nbatches = -(-len(y) // cfg.batch_size)
    lr_at, flip = schedule(cfg), cfg.augment and flips_allowed(cfg.dataset)
    for i, (xb, yb) in enumerate(iterate_batches(x, y, cfg.batch_size, rng)):
        opt.lr = lr_at(run.epoch - 1 + i / nbatches)
        if cfg.augment:
            xb = to_device(augment(to_device(xb, "cpu"), rng, SHIFT, flip, fill=0.0), device_of(xb))
        if graph is not None and len(yb) == cfg.batch_size:
            loss = graph(xb, yb)
        else:
            loss = train_step(model, opt, loss_fn, xb, yb)
        run.step += 1
        run_sum, run_n = run_sum + loss, run_n + 1
        if run.step % sync_every == 0 or i == nbatches - 1:
            total = to_host_float(run_sum)
            run.check_loss(total / run_n, "training loss")
            log_sum, log_n, ep_sum, ep_n = log_sum + total, log_n + run_n, ep_sum + total, ep_n + run_n
            run_sum, run_n = 0, 0
        if run.step % cfg.log_every == 0 and log_n:
            bar.set_postfix(loss=f"{log_sum / log_n:.4f}")
            run.log(kind="train", epoch=run.epoch, step=run.step, loss=log_sum / log_n)
            log_sum, log_n = 0.0, 0
        bar.update(len(yb))
    return ep_sum / ep_n


def _graph_wanted(cfg: CNNConfig, device: str) -> bool:
    """Whether full batches replay a CUDA graph: --graph on|off, or by default on a GPU. Every CNN
    step captures: SGD and Adam, a --schedule (the optimizer's device learning rate, set between
    replays), --dropout (its device call counter, advanced by the kernel) and --tf32 (the TF32
    kernels, their channels-last copies and packs; linear stays on kernels/linear.cu)."""
    return use_graph(cfg.graph, device)


def _step_graph(model, opt, loss_fn) -> StepGraph:
    """train_step as a StepGraph: the capture pass runs the step once more than it trains (undone
    on the step count; the device state it would change, Adam's counters and Dropout's call
    counters, is not changed by a capture), a replay runs no Python step code (redone)."""
    return StepGraph(lambda xb, yb: train_step(model, opt, loss_fn, xb, yb),
                     on_capture=lambda: setattr(opt, "steps", opt.steps - 1),
                     on_replay=lambda: setattr(opt, "steps", opt.steps + 1))


def _load_data(cfg: CNNConfig):
    """(x_train, y_train, x_test, y_test, the data set, its fingerprint) as the flags select them."""
    data = fake_dataset(train=64, test=32) if cfg.dry_run else load_dataset(cfg.dataset, cfg.data_dir)
    images, labels = first_n(cfg, (data.train_images, data.train_labels), len(data.train_labels))
    x_test, y_test = to_float(data.test_images), data.test_labels
    if cfg.dry_run:
        x_test, y_test = x_test[:2 * cfg.test_batch_size], y_test[:2 * cfg.test_batch_size]
    say(f"data: {data.describe()}" + (f"; training on the first {len(labels)}" if cfg.train_size else ""))
    return to_float(images), labels, x_test, y_test, data, fingerprint(images, labels)


def train_cnn(cfg: CNNConfig) -> dict:
    """Run (or resume) training as ``cfg`` says; returns the summary also written to <out>/results.json."""
    cfg = _prepare(cfg)
    require_extras()  # before any work: a missing safetensors/Pillow would otherwise show after an epoch
    device = resolve_device(cfg.device, cfg.kernels)
    graphed = _graph_wanted(cfg, device)  # a --graph error before any work
    xp = xp_for(device)
    with Run(cfg, "cnn", "cnn") as run:
        x_train, y_train, x_test, y_test, data, data_sha = _load_data(cfg)
        arch = arch_of(cfg, data.image_shape)
        rng = np.random.default_rng(cfg.seed)
        model = allocating("the model", lambda: build_from_arch(arch, rng=rng))
        history = {k: [] for k in HISTORY_KEYS}
        opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
        if run.source is not None:
            rng, history = _resume(run, cfg, model, opt, arch, len(y_train), data_sha)
        model.to(device, kernels=cfg.kernels)
        loss_fn = nn.CrossEntropyLoss(kernels=cfg.kernels)
        if run.epoch < cfg.epochs:
            say(f"model: {sum(int(p.data.size) for p in model.parameters())} parameters on {device}; "
                f"{cfg.optimizer} lr {cfg.lr} ({cfg.schedule}), batch {cfg.batch_size}, epochs "
                f"{run.epoch + 1}..{cfg.epochs}" + (", augmented" if cfg.augment else ""))
        # int32 labels, the loss kernel's type, converted once: a captured step may not convert them
        xd, yd, xt, yt = (allocating("the data on the device", lambda a=a: xp.asarray(a))
                          for a in (x_train, y_train.astype(np.int32), x_test, y_test))
        sync_every = 1 if device == "cpu" else cfg.log_every  # the GPU keeps losses on the device between syncs
        graph = _step_graph(model, opt, loss_fn) if graphed else None
        for epoch in range(run.epoch + 1, cfg.epochs + 1):
            run.epoch, t0 = epoch, time.perf_counter()
            with progress(len(y_train), f"epoch {epoch}/{cfg.epochs}", cfg.progress, cfg.batch_size,
                          cfg.progress_seconds) as bar:
                train_loss = train_epoch(model, opt, loss_fn, xd, yd, cfg, rng, run, bar, sync_every, graph)
            seconds = time.perf_counter() - t0
            test_loss, acc = evaluate(model, xt, yt, cfg.test_batch_size)
            run.check_loss(test_loss, "test loss")
            for k, v in zip(HISTORY_KEYS, (epoch, train_loss, test_loss, acc, seconds)):
                history[k].append(v)
            meta = {"kind": "cnn", "arch": arch, "optimizer": cfg.optimizer, "epoch": epoch, "step": run.step,
                    "rng": rng_state(rng), "history": history, "dataset": cfg.dataset, "train_images": len(y_train),
                    "data_sha256": data_sha, "config": config_json(cfg)}
            run.save({**with_prefix(model.state_dict(), "model."), **with_prefix(opt.state_dict(), "optim.")}, meta)
            run.log(kind="epoch", epoch=epoch, step=run.step, train_loss=train_loss, test_loss=test_loss,
                    test_accuracy=acc, seconds=seconds, images_per_s=len(y_train) / seconds)
            say(f"epoch {epoch}/{cfg.epochs}: train loss {train_loss:.4f}, test loss {test_loss:.4f}, "
                f"test accuracy {100 * acc:.2f}% ({seconds:.1f} s, {len(y_train) / seconds:.0f} img/s)")
        return _finish(run, history, device, data)


def _resume(run: Run, cfg: CNNConfig, model, opt, arch: dict, train_images: int, data_sha: str):
    """Load the checkpoint into model and opt after the must-match checks; (rng, history) to go on with."""
    tensors, meta = run.resume(RESUME_KEYS)
    run.check_same_run(meta, arch, RESUME_MUST_MATCH, train_images, data_sha)
    model.load_state_dict(split_prefix(tensors, "model."))
    opt.load_state_dict(split_prefix(tensors, "optim."))
    opt.lr = float(cfg.lr)  # equal to the checkpoint's, or a new rate with --allow-lr-change (then scheduled)
    run.epoch, run.step = meta["epoch"], meta["step"]
    say(f"resumed from {run.source}: epoch {run.epoch}, step {run.step}")
    if run.epoch >= cfg.epochs:
        say(f"checkpoint already has {run.epoch} epochs >= --epochs {cfg.epochs}; nothing to train")
    return rng_from_state(meta["rng"]), meta["history"]


def _finish(run: Run, history: dict, device: str, data) -> dict:
    result = {"test_accuracy": history["test_accuracy"][-1] if history["test_accuracy"] else None,
              "epochs": len(history["epoch"]), "step": run.step, "device": device, "dataset": data.describe(),
              "seconds_per_epoch": history["seconds"], "history": history, "checkpoint": run.checkpoint}
    if history["epoch"]:
        ep = history["epoch"]
        run.plot("loss.png", {"train loss": (ep, history["train_loss"]), "test loss": (ep, history["test_loss"])},
                 title="LeNet cross-entropy loss per epoch", xlabel="epoch", ylabel="loss")
        run.plot("accuracy.png", {"test accuracy": (ep, [100 * a for a in history["test_accuracy"]])},
                 title="LeNet test accuracy per epoch", xlabel="epoch", ylabel="accuracy (%)")
    return run.finish(result)
