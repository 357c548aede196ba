"""Build the Fashion-MNIST sample bundled in fastconv/data/sample/ from the full IDX files.

The draw is class-balanced and seeded: for each class c, ``--train-per-class`` training and
``--test-per-class`` test images are chosen without replacement by numpy's PCG64 generator seeded
with ``--seed``, kept in their original order. Files are gzipped without a time stamp, so the
same inputs always give byte-identical outputs; PROVENANCE.md records the input and output SHA-256.

    python scripts/make_sample.py --src /usr/share/datasets/fashion-mnist
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fastconv.data.datasets import SAMPLE_DIR, _FILES, find_data_dir, _read_split  # noqa: E402
from fastconv.data.idx import write_idx  # noqa: E402


def balanced_draw(labels: np.ndarray, per_class: int, rng: np.random.Generator) -> np.ndarray:
    picks = []
    for c in range(10):
        where = np.flatnonzero(labels == c)
        if len(where) < per_class:
            raise ValueError(f"per_class: got {per_class}, but class {c} has only {len(where)} images")
        picks.append(rng.choice(where, size=per_class, replace=False))
    return np.sort(np.concatenate(picks))


def sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--src", default="/usr/share/datasets/fashion-mnist", help="directory of the full IDX files")
    p.add_argument("--dst", default=SAMPLE_DIR, help="where the sample .gz files and PROVENANCE.md go")
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--test-per-class", type=int, default=100)
    p.add_argument("--seed", type=int, default=20251126)
    args = p.parse_args(argv)

    _, files = find_data_dir("fashion-mnist", args.src)
    rng = np.random.default_rng(args.seed)
    os.makedirs(args.dst, exist_ok=True)
    rows = []
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        images, labels = _read_split(files, split)
        idx = balanced_draw(labels, per_class, rng)
        for kind, arr in (("images", images[idx]), ("labels", labels[idx].astype(np.uint8))):
            src = files[f"{split}_{kind}"]
            dst = os.path.join(args.dst, _FILES[f"{split}_{kind}"] + ".gz")
            write_idx(dst, arr, compress=True)
            rows.append((os.path.basename(src), sha256(src), os.path.basename(dst), sha256(dst), arr.shape))
            print(f"{dst}: {arr.shape} from {src}")

    table = "\n".join(f"| {s} | `{sh}` | {d} | `{dh}` | {shape} |" for s, sh, d, dh, shape in rows)
    with open(os.path.join(args.dst, "PROVENANCE.md"), "w") as f:
        f.write(PROVENANCE.format(train=args.train_per_class, test=args.test_per_class, seed=args.seed,
                                  ntrain=10 * args.train_per_class, ntest=10 * args.test_per_class, table=table))
    return 0


PROVENANCE = """# Bundled Fashion-MNIST sample

A small subset of Fashion-MNIST, shipped so that `fastconv train` runs out of the box when the
full data set is not installed. It is used only when no `--data-dir`, no `FASTCONV_DATA` and no
`/usr/share/datasets/fashion-mnist/` is found. Accuracy on it is not comparable with published
Fashion-MNIST results (train on the full set for that: `apt-get install dataset-fashion-mnist`).

## Source and licence
- Fashion-MNIST, Copyright (c) 2017 Zalando SE, https://github.com/zalandoresearch/fashion-mnist,
  released under the MIT License (reproduced below). Han Xiao, Kashif Rasul, Roland Vollgraf,
  "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms", arXiv:1708.07747.
- Taken from the Debian package `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist/).

## How it was made
`python scripts/make_sample.py --seed {seed} --train-per-class {train} --test-per-class {test}`:
a class-balanced draw without replacement ({train} train and {test} test images per class,
{ntrain} and {ntest} in all), PCG64 seeded with {seed}, images kept in their original order,
written as gzipped IDX files without a time stamp (rerunning gives byte-identical files).

| source file | source SHA-256 | sample file | sample SHA-256 | shape |
|---|---|---|---|---|
{table}

## MIT License (Fashion-MNIST)

Copyright (c) 2017 Zalando SE

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

if __name__ == "__main__":
    sys.exit(main())
