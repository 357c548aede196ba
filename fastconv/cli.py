"""The ``fastconv`` command: train a CNN or a GAN, evaluate, sample, check the kernels.

    fastconv train cnn --epochs 10 --out runs/cnn
    fastconv train gan --model dcgan --epochs 5 --out runs/dcgan
    fastconv eval --checkpoint runs/cnn/checkpoint.safetensors
    fastconv sample --checkpoint runs/dcgan/checkpoint.safetensors --seed 1 --output grid.png
    fastconv train gan --model cdcgan --out runs/cdcgan      # class-conditional DCGAN
    fastconv sample --checkpoint runs/cdcgan/checkpoint.safetensors --output classes.png   # a row per class
    fastconv score --checkpoint runs/cdcgan/checkpoint.safetensors --n 10000   # Fréchet distance, label fidelity
    fastconv check                      # GPU kernels against the NumPy reference
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from .checkpoint import CheckpointError
from .data import DATASETS, DataNotFoundError, IdxError

EXIT_ERROR = 2
EXIT_NONFINITE = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports Ctrl-C


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows each flag's default, unless its help already says what the default is."""

    def _get_help_string(self, action):
        if "default:" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _number(parse, accepts, want: str, name: str):
    """An argparse type: ``parse`` (int or float) of the text, refused with "got ..., expected <want>"
    unless ``accepts(value)``. ``name`` is what argparse calls the type in "invalid <name> value"."""

    def convert(text: str):
        try:
            v = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"got {text!r}, expected {want}") from None
        if not accepts(v):
            # an int is shown as the number; a float as typed, since float() would rewrite '-1e-4'
            raise argparse.ArgumentTypeError(f"got {v if parse is int else repr(text)}, expected {want}")
        return v

    convert.__name__ = name
    return convert


_positive_int = _number(int, lambda v: v >= 1, "a positive int", "positive int")
_nonnegative_int = _number(int, lambda v: v >= 0, "an int >= 0", "int >= 0")
_positive_float = _number(float, lambda v: math.isfinite(v) and v > 0, "a positive finite number",
                          "positive number")
_nonnegative_float = _number(float, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0",
                             "number >= 0")
_probability = _number(float, lambda v: math.isfinite(v) and 0 <= v < 1, "a number in [0, 1)",
                       "number in [0, 1)")
_probability_open = _number(float, lambda v: math.isfinite(v) and 0 < v < 1, "a number in (0, 1)",
                            "number in (0, 1)")


def _common(p: argparse.ArgumentParser, epochs: int, batch_size: int, lr: float) -> None:
    g = p.add_argument_group("data and run")
    g.add_argument("--dataset", choices=DATASETS, default="fashion-mnist", help="data set to train on")
    g.add_argument("--data-dir", default=None, metavar="DIR",
                   help="directory of the IDX files (default: $FASTCONV_DATA, /usr/share/datasets/<name>/, "
                        "then the bundled sample)")
    g.add_argument("--train-size", type=_positive_int, default=None, metavar="N",
                   help="train on the first N training images only (default: all)")
    g.add_argument("--epochs", type=_positive_int, default=epochs,
                   help="total epochs (a resumed run continues up to it)")
    g.add_argument("--batch-size", type=_positive_int, default=batch_size, help="images per training step")
    g.add_argument("--lr", type=_positive_float, default=lr, help="learning rate")
    g.add_argument("--seed", type=_nonnegative_int, default=0, help="seeds initialisation, shuffling and noise")
    g.add_argument("--device", choices=("auto", "cpu", "cuda", "emu"), default="auto",
                   help="auto: the GPU when CuPy sees one, else the CPU; emu: the CUDA C kernels run on the CPU "
                        "(slow; for checking them without a GPU)")
    g.add_argument("--kernels", choices=("cupy", "numba"), default=None,
                   help="GPU kernel family (default: $FASTCONV_KERNELS or cupy)")
    g.add_argument("--tf32", action="store_true",
                   help="TF32 tensor cores for the GPU conv layers; linear layers stay fp32 (kernels/linear.cu), so "
                        "the step can still be one CUDA graph (default: off, or $FASTCONV_TF32=1)")
    g.add_argument("--autotune", action="store_true",
                   help="the CUDA C conv passes time their candidate kernels on the first step and run the fastest "
                        "(as cudnn.benchmark; default: off, or $FASTCONV_AUTOTUNE=1)")
    g.add_argument("--out", default=None, metavar="DIR",
                   help="output folder: checkpoint, metrics.jsonl, PNGs (default: runs/<model>; for --dry-run a new "
                        "temporary folder); locked while the run lasts")
    g.add_argument("--overwrite", action="store_true",
                   help="start a fresh run even though --out holds another run's checkpoint, replacing it "
                        "(default: refuse, and say to use --resume or another --out)")
    g.add_argument("--resume", nargs="?", const=True, default=None, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT (without a value: <out>/checkpoint.safetensors; "
                        "default: a fresh run)")
    g.add_argument("--allow-lr-change", action="store_true",
                   help="with --resume: train on with a --lr other than the checkpoint's (a hand-made schedule, or "
                        "after a NaN loss); every other setting that changes the result must match (default: off)")
    g.add_argument("--dry-run", action="store_true",
                   help="smoke run: fake data, two tiny batches, every output written (default: off; into a "
                        "temporary folder unless --out is given)")
    g.add_argument("--log-every", type=_positive_int, default=50, metavar="N",
                   help="log metrics every N steps (the GPU syncs only then)")
    g.add_argument("--graph", choices=("on", "off"), default=None,
                   help="replay each training step as one CUDA graph (default: on on a GPU, for every trainer; "
                        "off: launch every kernel from Python)")
    g.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars (default: a bar on a terminal, plain lines in a log or pipe)")
    g.add_argument("--progress-seconds", type=_nonnegative_float, default=10.0, metavar="S",
                   help="without a terminal: a progress line (step, loss, img/s, ETA) at most every S seconds")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fastconv", description=__doc__, formatter_class=_Formatter)
    sub = p.add_subparsers(dest="command", required=True, metavar="{train,eval,sample,score,check}")

    train = sub.add_parser("train", help="train a model", formatter_class=_Formatter)
    tsub = train.add_subparsers(dest="what", required=True, metavar="{cnn,gan}")

    cnn = tsub.add_parser("cnn", help="LeNet-style classifier", formatter_class=_Formatter,
                          description="Train a LeNet-style classifier; test accuracy after every epoch.")
    _common(cnn, epochs=10, batch_size=128, lr=0.05)
    m = cnn.add_argument_group("model and optimizer")
    m.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="SGD with momentum, or Adam")
    m.add_argument("--momentum", type=_nonnegative_float, default=0.9, help="SGD momentum")
    m.add_argument("--weight-decay", type=_nonnegative_float, default=0.0, help="L2 penalty added to the gradient")
    m.add_argument("--channels", default="32,64", help="conv widths, one conv+ReLU+maxpool block each")
    m.add_argument("--hidden", default="256", help="hidden Linear widths ('' for none)")
    m.add_argument("--kernel-size", type=_positive_int, default=5, help="odd conv kernel size ('same' padding)")
    m.add_argument("--test-batch-size", type=_positive_int, default=250, help="images per evaluation batch")
    m.add_argument("--batchnorm", action="store_true", help="BatchNorm after every conv and hidden Linear")
    m.add_argument("--dropout", type=_probability, default=0.0, metavar="P",
                   help="Dropout with probability P after every hidden Linear's ReLU (0: none)")
    m.add_argument("--augment", action="store_true",
                   help="random shifts of up to 2 pixels (zero padding) and, where labels allow (Fashion-MNIST, not "
                        "MNIST digits), horizontal flips of each training batch")
    m.add_argument("--schedule", choices=("constant", "step", "cosine"), default="constant",
                   help="learning rate per step: constant; step: times --lr-gamma every --lr-step epochs; cosine: "
                        "from --lr down to 0 at --epochs")
    m.add_argument("--lr-step", type=_positive_float, default=10.0, metavar="E", help="step schedule: epochs per decay")
    m.add_argument("--lr-gamma", type=_probability_open, default=0.1, metavar="G", help="step schedule: decay factor")

    gan = tsub.add_parser("gan", help="MLP GAN, DCGAN or conditional DCGAN", formatter_class=_Formatter,
                          description="Train a GAN; sample grids of a fixed noise batch go to <out>/samples/.")
    _common(gan, epochs=5, batch_size=64, lr=2e-4)
    m = gan.add_argument_group("model and optimizer")
    m.add_argument("--model", choices=("mlp", "dcgan", "cdcgan"), default="dcgan",
                   help="MLP GAN, DCGAN, or the class-conditional DCGAN (its grids: one row per class)")
    m.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 (G and D)")
    m.add_argument("--nz", type=_positive_int, default=100, help="noise dimension")
    m.add_argument("--width", type=_positive_int, default=64, help="DCGAN base width (ngf = ndf)")
    m.add_argument("--g-hidden", default="256,512", help="MLP G hidden widths")
    m.add_argument("--d-hidden", default="512,256", help="MLP D hidden widths")
    m.add_argument("--d-steps", type=_positive_int, default=1, help="k: D updates per G update")
    m.add_argument("--g-loss", choices=("nonsat", "minimax"), default="nonsat",
                   help="nonsat: minimise -log D(G(z)); minimax: minimise log(1 - D(G(z)))")
    m.add_argument("--sample-every", type=_positive_int, default=500, metavar="N",
                   help="write a sample grid every N iterations")
    m.add_argument("--n-samples", type=_positive_int, default=64, help="images in each sample grid")
    m.add_argument("--iterations", type=_positive_int, default=None, metavar="N",
                   help="stop after N iterations in all, however many epochs that takes (replaces --epochs; "
                        "a checkpoint and the final grid are written at the stop; default: use --epochs)")

    ev = sub.add_parser("eval", help="test accuracy of a CNN checkpoint", formatter_class=_Formatter)
    ev.add_argument("--checkpoint", required=True, help="a checkpoint written by `fastconv train cnn`")
    ev.add_argument("--dataset", choices=DATASETS, default=None, help="default: the checkpoint's data set")
    ev.add_argument("--data-dir", default=None, metavar="DIR", help="directory of the IDX files")
    ev.add_argument("--batch-size", type=_positive_int, default=250, help="images per evaluation batch")
    ev.add_argument("--device", choices=("auto", "cpu", "cuda", "emu"), default="auto", help="where to run")
    ev.add_argument("--kernels", choices=("cupy", "numba"), default=None, help="GPU kernel family")

    sa = sub.add_parser("sample", help="PNG grid from a GAN checkpoint", formatter_class=_Formatter)
    sa.add_argument("--checkpoint", required=True, help="a checkpoint written by `fastconv train gan`")
    sa.add_argument("--output", default="samples.png", help="image file to write (format from its extension: .png, "
                    ".jpg, ...)")
    sa.add_argument("--num", type=_positive_int, default=64, help="number of images")
    sa.add_argument("--nrow", type=_positive_int, default=None, help="images per row (default: square)")
    sa.add_argument("--seed", type=_nonnegative_int, default=0, help="seeds the noise")
    sa.add_argument("--class", dest="cls", type=_nonnegative_int, default=None, metavar="C",
                    help="conditional models: --num images of class C (default: a 10 x 10 grid, one row per class, "
                         "labelled with the class names)")
    sa.add_argument("--device", choices=("auto", "cpu", "cuda", "emu"), default="auto", help="where to run")
    sa.add_argument("--kernels", choices=("cupy", "numba"), default=None, help="GPU kernel family")

    sc = sub.add_parser("score", help="image-quality score of a GAN checkpoint", formatter_class=_Formatter,
                        description="Fréchet distance between the features of n generated and n real images on "
                                    "the shipped scorer (fastconv/data/scorer/), beside real-vs-real (test split "
                                    "against training split) and an untrained generator; for a conditional model "
                                    "also the scorer's accuracy per requested class (label fidelity).")
    sc.add_argument("--checkpoint", required=True, help="a checkpoint written by `fastconv train gan`")
    sc.add_argument("--n", type=_positive_int, default=10000, help="images in each set")
    sc.add_argument("--seed", type=_nonnegative_int, default=0, help="seeds the noise and the untrained generator")
    sc.add_argument("--data-dir", default=None, metavar="DIR", help="directory of the IDX files")
    sc.add_argument("--json", default=None, metavar="FILE", help="also write the numbers to FILE as JSON")
    sc.add_argument("--device", choices=("auto", "cpu", "cuda", "emu"), default="auto", help="where to run")
    sc.add_argument("--kernels", choices=("cupy", "numba"), default=None, help="GPU kernel family")

    sub.add_parser("check", help="run the GPU kernel checks (fastconv check --help)", add_help=False)
    return p


def _train(args) -> int:
    if args.tf32 or args.autotune:
        from . import settings
        settings.configure(**{name: True for name in ("tf32", "autotune") if getattr(args, name)})
    common = dict(dataset=args.dataset, data_dir=args.data_dir, epochs=args.epochs, batch_size=args.batch_size,
                  lr=args.lr, seed=args.seed, device=args.device, kernels=args.kernels, resume=args.resume,
                  dry_run=args.dry_run, train_size=args.train_size, log_every=args.log_every,
                  progress=args.progress, progress_seconds=args.progress_seconds,
                  allow_lr_change=args.allow_lr_change, overwrite=args.overwrite, out=args.out,
                  graph=args.graph)
    if args.what == "cnn":
        from .train.cnn import CNNConfig, train_cnn
        cfg = CNNConfig(optimizer=args.optimizer, momentum=args.momentum,
                        weight_decay=args.weight_decay, channels=args.channels, hidden=args.hidden,
                        kernel_size=args.kernel_size, test_batch_size=args.test_batch_size,
                        batchnorm=args.batchnorm, dropout=args.dropout, augment=args.augment, schedule=args.schedule,
                        lr_step=args.lr_step, lr_gamma=args.lr_gamma, **common)
        result = train_cnn(cfg)
        acc = result["test_accuracy"]
        print(f"test accuracy {100 * acc:.2f}% after {result['epochs']} epochs; outputs in {result['out']}"
              if acc is not None else f"no epoch trained; outputs in {result['out']}")
        return 0
    from .train.gan import GANConfig, train_gan
    cfg = GANConfig(model=args.model, beta1=args.beta1, nz=args.nz,
                    width=args.width, g_hidden=args.g_hidden, d_hidden=args.d_hidden, d_steps=args.d_steps,
                    g_loss=args.g_loss, sample_every=args.sample_every, n_samples=args.n_samples,
                    iterations=args.iterations, **common)
    result = train_gan(cfg)
    if "d_x" in result:
        print(f"{cfg.model}: {result['iter']} iterations; over the last {result['means_over_iterations']}: "
              f"mean D(x) {result['d_x']:.3f}, mean D(G(z)) {result['d_g_z']:.3f}; samples {result['samples']}")
    return 0


def _eval(args) -> int:
    from .data import load_dataset, to_float
    from .train.cnn import evaluate, model_from_checkpoint
    from .train.common import resolve_device, xp_for

    device = resolve_device(args.device, args.kernels)
    model, meta = model_from_checkpoint(args.checkpoint, device, args.kernels)
    dataset = args.dataset or meta.get("dataset", "fashion-mnist")
    if dataset == "fake":
        from .data import fake_dataset
        data = fake_dataset()
    else:
        data = load_dataset(dataset, args.data_dir)
    if tuple(data.image_shape) != tuple(meta["arch"]["in_shape"]):
        raise ValueError(f"dataset: {dataset!r} has images of shape {data.image_shape}, expected "
                         f"{tuple(meta['arch']['in_shape'])} as the checkpoint's model")
    xp = xp_for(device)
    loss, acc = evaluate(model, xp.asarray(to_float(data.test_images)), xp.asarray(data.test_labels),
                         args.batch_size)
    print(json.dumps({"checkpoint": args.checkpoint, "dataset": data.describe(), "epoch": meta["epoch"],
                      "test_loss": round(loss, 6), "test_accuracy": round(acc, 6)}))
    return 0


def _sample(args) -> int:
    import numpy as np

    from .data import CLASS_NAMES
    from .train.common import require_extras, resolve_device, writable_file, xp_for
    from .train.gan import CLASSES, generate, generator_from_checkpoint, grid_labels, is_conditional, noise

    if args.num < 1:
        raise ValueError(f"num: got {args.num}, expected a positive number of images")
    if args.nrow is not None and args.nrow < 1:
        raise ValueError(f"nrow: got {args.nrow}, expected a positive int (images per row)")
    require_extras()
    writable_file(args.output, "output")
    device = resolve_device(args.device, args.kernels)
    G, meta = generator_from_checkpoint(args.checkpoint, device, args.kernels)
    xp, model = xp_for(device), meta["arch"]["model"]
    if not is_conditional(G):
        if args.cls is not None:
            raise ValueError(f"class: got {args.cls} for a {model!r} checkpoint, expected a conditional model "
                             "(--model cdcgan)")
        z = noise(np.random.default_rng(args.seed), args.num, meta["arch"]["nz"], xp)
        generate(G, z, args.output, nrow=args.nrow)
        print(f"wrote {args.output}: {args.num} samples of the {model} G at epoch {meta['epoch']}, seed {args.seed}")
        return 0
    if args.cls is not None and args.cls >= CLASSES:
        raise ValueError(f"class: got {args.cls}, expected a class in 0..{CLASSES - 1}")
    names = CLASS_NAMES[meta.get("dataset", "fashion-mnist")]
    if args.cls is None:  # one row per class
        labels, nrow, n = grid_labels(CLASSES, CLASSES), CLASSES, CLASSES * CLASSES
        rows = list(names)
    else:
        labels, nrow, n = np.full(args.num, args.cls, np.int64), args.nrow or min(args.num, 10), args.num
        rows = [names[args.cls]] * -(-n // nrow)
    z = noise(np.random.default_rng(args.seed), n, meta["arch"]["nz"], xp)
    generate(G, z, args.output, nrow=nrow, labels=xp.asarray(labels), row_labels=rows)
    what = (f"{len(rows)} rows, one per class" if args.cls is None else
            f"{n} images of class {args.cls} ({names[args.cls]})")
    print(f"wrote {args.output}: {what}, from the {model} G at epoch {meta['epoch']}, seed {args.seed}")
    return 0


def _score(args) -> int:
    from .data import CLASS_NAMES
    from .score import format_score, score_checkpoint
    from .train.common import resolve_device

    device = resolve_device(args.device, args.kernels)
    result = score_checkpoint(args.checkpoint, args.n, args.seed, args.data_dir, device, args.kernels)
    print(format_score(result, CLASS_NAMES.get(result["dataset"])))
    if args.json:
        from .checkpoint import atomic_write
        atomic_write(args.json, (json.dumps(result, indent=1) + "\n").encode())
    return 0


def _one_line(e: BaseException) -> str:
    """An exception as one line; an OSError always with its path."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}: {e.filename!r}" if e.filename else f"{e.strerror} ({e})"
    return str(e).replace("\n", " ") or type(e).__name__


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "check":  # the check tool owns its flags
        from .check import main as check_main
        return check_main(argv[1:])
    try:
        args = build_parser().parse_args(argv)
        from .train.common import NonFiniteLossError
        from .train.run import Interrupted
        try:
            if args.command == "train":
                return _train(args)
            if args.command == "eval":
                return _eval(args)
            if args.command == "score":
                return _score(args)
            return _sample(args)
        except NonFiniteLossError as e:
            print(f"fastconv: stopped: {e}", file=sys.stderr)
            return EXIT_NONFINITE
        except Interrupted as e:
            print(f"fastconv: {e}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except MemoryError as e:
            print(f"fastconv: error: out of memory: {_one_line(e)}", file=sys.stderr)
            if os.environ.get("FASTCONV_TRACEBACK"):
                raise
            return EXIT_ERROR
        except (ValueError, KeyError, TypeError, RuntimeError, OSError, CheckpointError, DataNotFoundError,
                IdxError) as e:
            print(f"fastconv: error: {_one_line(e)}", file=sys.stderr)
            if os.environ.get("FASTCONV_TRACEBACK"):
                raise
            return EXIT_ERROR
    except KeyboardInterrupt:  # outside a run (loading, evaluating, sampling): nothing to resume
        print("fastconv: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
