"""Classic image augmentation for training classifiers: random shifts (pad, then crop) and
horizontal flips, vectorised over the batch and drawn from a seeded numpy Generator.

Flips are only for data sets whose classes are mirror-symmetric as a set: a mirrored shirt or
shoe is still a shirt or shoe, a mirrored 2 or 7 is not a digit (``FLIPS``).
"""

from __future__ import annotations

import numpy as np

# data set -> whether a horizontal flip keeps every image's label
FLIPS = {"fashion-mnist": True, "mnist": False, "fake": False}


def flips_allowed(dataset: str) -> bool:
    if dataset not in FLIPS:
        raise ValueError(f"dataset: got {dataset!r}, expected one of {', '.join(map(repr, FLIPS))}")
    return FLIPS[dataset]


def augment(x: np.ndarray, rng: np.random.Generator, shift: int = 2, flip: bool = False,
            fill: float = 0.0) -> np.ndarray:
    """A new batch: each image of x (N, C, H, W) moved by (dy, dx) drawn uniformly from
    [-shift, shift]^2 (vacated pixels set to ``fill``, the background: 0 for [0, 1] images, -1 for
    [-1, 1]), then, if ``flip``, mirrored left-right with probability 1/2.

    Draws, in this order: rng.integers(0, 2 * shift + 1, (N, 2)) (crop offsets, row then column)
    and, if ``flip``, rng.random(N) < 0.5; so a seeded rng gives the same batch every time.
    """
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.dtype.kind != "f":
        raise ValueError(f"x: got {type(x).__name__} {getattr(x, 'dtype', '')} of shape "
                         f"{tuple(getattr(x, 'shape', ()))}, expected a float numpy array (N, C, H, W)")
    if isinstance(shift, bool) or not isinstance(shift, (int, np.integer)) or shift < 0:
        raise ValueError(f"shift: got {shift!r}, expected an int >= 0 (pixels)")
    n, c, h, w = x.shape
    s = int(shift)
    offsets = rng.integers(0, 2 * s + 1, (n, 2))
    if s:
        padded = np.full((n, c, h + 2 * s, w + 2 * s), fill, x.dtype)
        padded[:, :, s:s + h, s:s + w] = x
        rows = (offsets[:, 0, None] + np.arange(h))[:, None, :, None]   # (N, 1, H, 1)
        cols = (offsets[:, 1, None] + np.arange(w))[:, None, None, :]   # (N, 1, 1, W)
        out = padded[np.arange(n)[:, None, None, None], np.arange(c)[None, :, None, None], rows, cols]
    else:
        out = x.copy()
    if flip:
        mirror = rng.random(n) < 0.5
        out[mirror] = out[mirror, :, :, ::-1]
    return out
