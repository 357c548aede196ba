"""Classic augmentation (fastconv.data.augment) against a per-image loop oracle with the same draws."""

import numpy as np
import pytest

from fastconv.data.augment import FLIPS, augment, flips_allowed


def loop_oracle(x, rng, shift, flip, fill):
    """Image by image: pad with fill, cut the window at the drawn offset, mirror if drawn."""
    n, c, h, w = x.shape
    offsets = rng.integers(0, 2 * shift + 1, (n, 2))
    mirror = rng.random(n) < 0.5 if flip else np.zeros(n, bool)
    out = np.empty_like(x)
    for i in range(n):
        for ch in range(c):
            for r in range(h):
                for col in range(w):
                    sr, sc = r + offsets[i, 0] - shift, col + offsets[i, 1] - shift
                    if mirror[i]:
                        sc = (w - 1 - col) + offsets[i, 1] - shift
                    out[i, ch, r, col] = x[i, ch, sr, sc] if 0 <= sr < h and 0 <= sc < w else fill
    return out


@pytest.mark.parametrize("shape,shift,flip,fill", [((6, 1, 7, 5), 2, True, 0.0), ((4, 2, 6, 6), 1, False, -1.0),
                                                   ((5, 1, 4, 4), 3, True, -1.0), ((3, 1, 5, 5), 0, True, 0.0)])
def test_augment_matches_loop_oracle(shape, shift, flip, fill):
    x = np.random.default_rng(0).uniform(0.1, 1.0, shape).astype(np.float32)
    got = augment(x, np.random.default_rng(1), shift, flip, fill)
    want = loop_oracle(x, np.random.default_rng(1), shift, flip, fill)
    assert got.dtype == x.dtype and np.array_equal(got, want)


def test_augment_moves_and_mirrors_some_images_and_keeps_x():
    x = np.random.default_rng(2).uniform(0.1, 1.0, (200, 1, 8, 8)).astype(np.float32)
    before = x.copy()
    out = augment(x, np.random.default_rng(3), 2, flip=True)
    assert np.array_equal(x, before)
    changed = np.any(out != x, axis=(1, 2, 3))
    assert 0.8 < changed.mean() < 1.0  # 1/25 of the shifts are (0, 0), half of those not mirrored
    same = augment(x, np.random.default_rng(3), 2, flip=True)
    assert np.array_equal(out, same)
    assert not np.array_equal(out, augment(x, np.random.default_rng(4), 2, flip=True))


def test_flips_only_where_labels_survive_them():
    assert flips_allowed("fashion-mnist") and not flips_allowed("mnist")
    assert set(FLIPS) == {"fashion-mnist", "mnist", "fake"}
    with pytest.raises(ValueError, match="dataset: got 'cifar'"):
        flips_allowed("cifar")


@pytest.mark.parametrize("x,shift,match", [
    (np.zeros((2, 8, 8), np.float32), 1, r"x: got ndarray float32 of shape \(2, 8, 8\)"),
    (np.zeros((2, 1, 8, 8), np.uint8), 1, "expected a float numpy array"),
    (np.zeros((2, 1, 8, 8), np.float32), -1, "shift: got -1"),
    (np.zeros((2, 1, 8, 8), np.float32), 1.5, "shift: got 1.5"),
])
def test_augment_bad_input(x, shift, match):
    with pytest.raises(ValueError, match=match):
        augment(x, np.random.default_rng(0), shift)
