"""Train and evaluate a LeNet-style image classifier (MNIST-layout data, 10 classes).

The default network is DESIGN.md's LeNet: conv 1->32 5x5 p2, ReLU, maxpool 2; conv 32->64 5x5
p2, ReLU, maxpool 2; Linear 3136->256, ReLU; Linear 256->10. ``channels`` and ``hidden`` change
its depth and width. One epoch = one seeded shuffle of the training set; after each epoch the
test accuracy is measured, a JSON line is logged and a checkpoint is written, so ``resume``
continues exactly where the run stopped (bitwise on the CPU).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .. import nn, settings
from ..checkpoint import load_checkpoint, rng_from_state, rng_state, save_checkpoint, split_prefix, with_prefix
from ..data import fake_dataset, iterate_batches, load_dataset, to_float
from ..graph import StepGraph
from .common import (CHECKPOINT_NAME, METRICS_NAME, MetricsLog, RunConfig, check_finite, check_nonnegative,
                     check_positive, check_resume_config, parse_int_list, progress, require_extras, resolve_device,
                     resume_path, say, to_host_float, use_graph, writable_dir, xp_for)
from .images import plot_curves

OPTIMIZERS = ("sgd", "adam")
# metadata a CNN checkpoint must hold: to rebuild the model (eval), and to resume a run
MODEL_KEYS = ("arch.channels", "arch.hidden", "arch.kernel_size", "arch.in_shape", "arch.classes", "epoch")
# settings that change the trained weights: a resumed run must use the checkpoint's values
RESUME_MUST_MATCH = ("dataset", "train_size", "batch_size", "seed", "optimizer", "lr", "momentum", "weight_decay")
RESUME_KEYS = MODEL_KEYS + ("arch", "step", "rng", "history", "train_images") + tuple(
    "config." + k for k in RESUME_MUST_MATCH)


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
    out: str = "runs/cnn"
    test_batch_size: int = 250


# ---------------------------------------------------------------------------------------------
# model

def build_cnn(channels=(32, 64), hidden=(256,), kernel_size=5, in_shape=(1, 28, 28), classes=10,
              rng=None) -> nn.Sequential:
    """Conv(k x k, 'same' padding) -> ReLU -> MaxPool 2 for each entry of ``channels``, then Flatten,
    Linear -> ReLU for each entry of ``hidden``, then Linear -> ``classes`` logits."""
    channels = parse_int_list(channels, "channels")
    hidden = parse_int_list(hidden, "hidden")
    if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: got {kernel_size!r}, expected an odd positive int ('same' padding)")
    c, h, w = in_shape
    layers = []
    for i, k in enumerate(channels):
        if h < 2 or w < 2:
            raise ValueError(f"channels: got {len(channels)} conv blocks, but a {in_shape[1]}x{in_shape[2]} image "
                             f"is {h}x{w} before block {i + 1}; expected at most {i} blocks")
        layers += [nn.Conv2d(c, k, kernel_size, padding=kernel_size // 2, rng=rng), nn.ReLU(), nn.MaxPool2d(2)]
        c, h, w = k, h // 2, w // 2
    layers.append(nn.Flatten())
    features = c * h * w
    for units in hidden:
        layers += [nn.Linear(features, units, rng=rng), nn.ReLU()]
        features = units
    layers.append(nn.Linear(features, classes, rng=rng))
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
            "kernel_size": int(cfg.kernel_size), "in_shape": [int(s) for s in in_shape], "classes": 10}


def model_from_checkpoint(path: str, device: str = "cpu", kernels: str | None = None):
    """(model in eval mode, metadata) from a CNN checkpoint."""
    tensors, meta = load_checkpoint(path, kind="cnn", keys=MODEL_KEYS)
    arch = meta["arch"]
    model = build_cnn(arch["channels"], arch["hidden"], arch["kernel_size"], tuple(arch["in_shape"]),
                      arch["classes"], rng=np.random.default_rng(0))
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
    check_positive(cfg.epochs, "epochs")
    check_positive(cfg.batch_size, "batch_size")
    check_positive(cfg.lr, "lr", float)
    check_positive(cfg.log_every, "log_every")
    check_positive(cfg.test_batch_size, "test_batch_size")
    check_nonnegative(cfg.momentum, "momentum")
    check_nonnegative(cfg.weight_decay, "weight_decay")
    if cfg.train_size is not None:
        check_positive(cfg.train_size, "train_size")
    if cfg.optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer: got {cfg.optimizer!r}, expected one of {', '.join(map(repr, OPTIMIZERS))}")
    return cfg


def _why_not_capturable(cfg: CNNConfig) -> str | None:
    """Why this run's training step cannot be one CUDA graph (None: it can)."""
    if cfg.optimizer != "sgd":
        return f"--optimizer {cfg.optimizer} keeps its step count on the host (only sgd is captured)"
    if settings.current().tf32:
        return "the tf32 setting runs the linear layers on cuBLAS, which CuPy cannot capture"
    return None


def train_cnn(cfg: CNNConfig) -> dict:
    """Run (or resume) training as ``cfg`` says; returns the summary also written to <out>/results.json."""
    cfg = _prepare(cfg)
    require_extras()  # before any work: a missing safetensors/Pillow would otherwise show after an epoch
    writable_dir(cfg.out, "out")
    device = resolve_device(cfg.device, cfg.kernels)
    xp = xp_for(device)
    data = fake_dataset(train=64, test=32) if cfg.dry_run else load_dataset(cfg.dataset, cfg.data_dir)
    x_train, y_train = to_float(data.train_images), data.train_labels
    if cfg.train_size is not None:
        x_train, y_train = x_train[:cfg.train_size], y_train[:cfg.train_size]
    x_test, y_test = to_float(data.test_images), data.test_labels
    if cfg.dry_run:
        x_test, y_test = x_test[:2 * cfg.test_batch_size], y_test[:2 * cfg.test_batch_size]
    say(f"data: {data.describe()}" + (f"; training on the first {len(y_train)}" if cfg.train_size else ""))

    os.makedirs(cfg.out, exist_ok=True)
    ckpt = os.path.join(cfg.out, CHECKPOINT_NAME)
    arch = arch_of(cfg, data.image_shape)
    rng = np.random.default_rng(cfg.seed)
    model = build_cnn(arch["channels"], arch["hidden"], arch["kernel_size"], data.image_shape, rng=rng)
    start_epoch, step, history = 0, 0, {"epoch": [], "train_loss": [], "test_loss": [], "test_accuracy": [],
                                        "seconds": []}
    opt_state = None
    src = resume_path(cfg.resume, cfg.out)
    if src is not None:
        tensors, meta = load_checkpoint(src, kind="cnn", keys=RESUME_KEYS)
        if meta["arch"] != arch:
            raise ValueError(f"resume: checkpoint {src!r} has architecture {meta['arch']}, but the flags give {arch}; "
                             "expected the same --channels/--hidden/--kernel-size and data set")
        check_resume_config(src, meta, cfg, RESUME_MUST_MATCH, len(y_train))
        model.load_state_dict(split_prefix(tensors, "model."))
        opt_state = split_prefix(tensors, "optim.")
        rng = rng_from_state(meta["rng"])
        start_epoch, step, history = meta["epoch"], meta["step"], meta["history"]
        say(f"resumed from {src}: epoch {start_epoch}, step {step}")
        if start_epoch >= cfg.epochs:
            say(f"checkpoint already has {start_epoch} epochs >= --epochs {cfg.epochs}; nothing to train")
    model.to(device, kernels=cfg.kernels)
    opt = make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum, cfg.weight_decay)
    if opt_state is not None:
        opt.load_state_dict(opt_state)
        opt.lr = float(cfg.lr)  # equal to the checkpoint's, or a new rate with --allow-lr-change
    loss_fn = nn.CrossEntropyLoss(kernels=cfg.kernels)
    if start_epoch < cfg.epochs:
        say(f"model: {sum(int(p.data.size) for p in model.parameters())} parameters on {device}; "
            f"{cfg.optimizer} lr {cfg.lr}, batch {cfg.batch_size}, epochs {start_epoch + 1}..{cfg.epochs}")

    # int32 labels, the loss kernel's type, converted once: a captured step may not convert them
    xd, yd = xp.asarray(x_train), xp.asarray(y_train.astype(np.int32))
    xt, yt = xp.asarray(x_test), xp.asarray(y_test)
    sync_every = 1 if device == "cpu" else cfg.log_every  # the GPU keeps losses on the device between syncs

    def train_step(xb, yb):
        loss = loss_fn.forward(model.forward(xb), yb)
        opt.zero_grad()
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        return loss
    graph = None
    if use_graph(cfg.graph, device, _why_not_capturable(cfg)):
        # full batches replay one CUDA graph; the last, smaller batch of an epoch runs eagerly (same
        # kernels, so a graph run equals an eager run and resumes exactly)
        graph = StepGraph(train_step, on_capture=lambda: setattr(opt, "steps", opt.steps - 1),
                          on_replay=lambda: setattr(opt, "steps", opt.steps + 1))
    with MetricsLog(os.path.join(cfg.out, METRICS_NAME), append=src is not None) as log:
        for epoch in range(start_epoch, cfg.epochs):
            model.train()
            t0 = time.perf_counter()
            run_sum, run_n, log_sum, log_n, ep_sum, ep_n = 0, 0, 0.0, 0, 0.0, 0
            nbatches = -(-len(y_train) // cfg.batch_size)
            with progress(len(y_train), f"epoch {epoch + 1}/{cfg.epochs}", cfg.progress) as bar:
                for i, (xb, yb) in enumerate(iterate_batches(xd, yd, cfg.batch_size, rng)):
                    full = len(yb) == cfg.batch_size
                    loss = graph(xb, yb) if graph is not None and full else train_step(xb, yb)
                    step += 1
                    run_sum, run_n = run_sum + loss, run_n + 1
                    if step % sync_every == 0 or i == nbatches - 1:
                        total = to_host_float(run_sum)
                        check_finite(total / run_n, "training loss", f"epoch {epoch + 1}, step {step}", ckpt)
                        log_sum, log_n, ep_sum, ep_n = log_sum + total, log_n + run_n, ep_sum + total, ep_n + run_n
                        run_sum, run_n = 0, 0
                    if step % cfg.log_every == 0 and log_n:
                        bar.set_postfix(loss=f"{log_sum / log_n:.4f}")
                        log.write(kind="train", epoch=epoch + 1, step=step, loss=log_sum / log_n)
                        log_sum, log_n = 0.0, 0
                    bar.update(len(yb))
            seconds = time.perf_counter() - t0
            test_loss, acc = evaluate(model, xt, yt, cfg.test_batch_size)
            check_finite(test_loss, "test loss", f"the end of epoch {epoch + 1}", ckpt)
            train_loss = ep_sum / ep_n
            for k, v in (("epoch", epoch + 1), ("train_loss", train_loss), ("test_loss", test_loss),
                         ("test_accuracy", acc), ("seconds", seconds)):
                history[k].append(v)
            meta = {"kind": "cnn", "arch": arch, "optimizer": cfg.optimizer, "epoch": epoch + 1, "step": step,
                    "rng": rng_state(rng), "history": history, "dataset": cfg.dataset,
                    "train_images": len(y_train), "config": _jsonable(cfg)}
            tensors = with_prefix(model.state_dict(), "model.")
            tensors.update(with_prefix(opt.state_dict(), "optim."))
            save_checkpoint(ckpt, tensors, meta)
            log.write(kind="epoch", epoch=epoch + 1, step=step, train_loss=train_loss, test_loss=test_loss,
                      test_accuracy=acc, seconds=seconds, images_per_s=len(y_train) / seconds)
            say(f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, test loss {test_loss:.4f}, "
                f"test accuracy {100 * acc:.2f}% ({seconds:.1f} s, {len(y_train) / seconds:.0f} img/s)")

    result = {"test_accuracy": history["test_accuracy"][-1] if history["test_accuracy"] else None,
              "epochs": len(history["epoch"]), "step": step, "device": device, "dataset": data.describe(),
              "seconds_per_epoch": history["seconds"], "history": history, "checkpoint": ckpt}
    with open(os.path.join(cfg.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    if history["epoch"]:
        plot_curves(os.path.join(cfg.out, "loss.png"), {"train loss": (history["epoch"], history["train_loss"]),
                                                        "test loss": (history["epoch"], history["test_loss"])},
                    title="cross-entropy", xlabel="epoch")
        plot_curves(os.path.join(cfg.out, "accuracy.png"),
                    {"test accuracy %": (history["epoch"], [100 * a for a in history["test_accuracy"]])},
                    title="test accuracy (%)", xlabel="epoch")
    return result


def _jsonable(cfg) -> dict:
    d = asdict(cfg)
    d["resume"] = None if d["resume"] in (None, False) else str(d["resume"])
    return d
