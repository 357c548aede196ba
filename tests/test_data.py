"""IDX reader and data sets: files written by the test (good, gzipped, truncated, wrong magic, wrong dims)."""

import gzip
import os
import zlib

import numpy as np
import pytest

from fastconv.data import (DataNotFoundError, IdxError, batch_indices, find_data_dir, iterate_batches,
                           load_dataset, read_idx, to_float, write_idx)
from fastconv.data import datasets as ds

STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _idx_bytes(arr, code=0x08):
    return bytes([0, 0, code, arr.ndim]) + np.asarray(arr.shape, ">u4").tobytes() + arr.astype(">u1").tobytes()


def _write_set(d, n_train=30, n_test=10, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    os.makedirs(d, exist_ok=True)
    arrays = {
        STEMS[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        STEMS[1]: rng.integers(0, 10, n_train).astype(np.uint8),
        STEMS[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        STEMS[3]: rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for stem, a in arrays.items():
        write_idx(os.path.join(d, stem + (".gz" if gz else "")), a)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_read_good_file(tmp_path, gz):
    arr = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    p = tmp_path / ("a.idx.gz" if gz else "a.idx")
    data = _idx_bytes(arr)
    p.write_bytes(gzip.compress(data) if gz else data)
    out = read_idx(p, ndim=3, dims=(None, 3, 5))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 5)
    np.testing.assert_array_equal(out, arr)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_write_read_roundtrip_all_types(tmp_path, dtype):
    arr = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    if dtype == np.uint8:
        arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "x.gz", arr)
    out = read_idx(tmp_path / "x.gz")
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_write_is_reproducible(tmp_path):
    arr = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", arr)
    write_idx(tmp_path / "b.gz", arr)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_truncated_raw_file(tmp_path):
    arr = np.ones((4, 28, 28), np.uint8)
    p = tmp_path / "t.idx"
    p.write_bytes(_idx_bytes(arr)[:-10])
    with pytest.raises(IdxError, match=r"t\.idx.*expected 3152.*truncated"):
        read_idx(p)


def test_trailing_bytes(tmp_path):
    p = tmp_path / "t.idx"
    p.write_bytes(_idx_bytes(np.ones(5, np.uint8)) + b"xx")
    with pytest.raises(IdxError, match="trailing"):
        read_idx(p)


def test_truncated_gzip(tmp_path):
    data = gzip.compress(_idx_bytes(np.arange(4000, dtype=np.int32).astype(np.uint8)))
    p = tmp_path / "t.gz"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(IdxError, match=r"t\.gz.*gzip"):
        read_idx(p)


def test_truncated_header(tmp_path):
    p = tmp_path / "h.idx"
    p.write_bytes(bytes([0, 0, 8, 3]) + b"\x00\x00\x00\x02")
    with pytest.raises(IdxError, match="header"):
        read_idx(p)


@pytest.mark.parametrize("magic", [b"\x00\x01\x08\x01", b"\x00\x00\x07\x01", b"PK\x03\x04", b"\x00\x00\x08\x00"])
def test_wrong_magic(tmp_path, magic):
    p = tmp_path / "m.idx"
    p.write_bytes(magic + b"\x00\x00\x00\x01" + b"\x05")
    with pytest.raises(IdxError, match=r"m\.idx"):
        read_idx(p)


def test_wrong_dims(tmp_path):
    p = tmp_path / "d.idx"
    p.write_bytes(_idx_bytes(np.zeros((3, 28, 27), np.uint8)))
    with pytest.raises(IdxError, match=r"expected \(\*, 28, 28\)"):
        read_idx(p, dims=(None, 28, 28))
    with pytest.raises(IdxError, match="expected 1-d"):
        read_idx(p, ndim=1)


def test_missing_file_is_filenotfound(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_idx(tmp_path / "nope.gz")


@pytest.mark.parametrize("gz", [False, True])
def test_load_dataset_from_data_dir(tmp_path, gz):
    arrays = _write_set(tmp_path / "d", gz=gz)
    d = load_dataset("mnist", data_dir=tmp_path / "d")
    np.testing.assert_array_equal(d.train_images, arrays[STEMS[0]])
    np.testing.assert_array_equal(d.test_labels, arrays[STEMS[3]])
    assert d.train_labels.dtype == np.int64 and d.image_shape == (1, 28, 28)


def test_label_count_mismatch(tmp_path):
    _write_set(tmp_path)
    write_idx(tmp_path / (STEMS[1] + ".gz"), np.zeros(29, np.uint8))
    with pytest.raises(IdxError, match="got 29 labels, expected 30"):
        load_dataset("mnist", data_dir=tmp_path)


def test_search_order(tmp_path, monkeypatch):
    _write_set(tmp_path / "env" / "mnist", n_train=11)
    _write_set(tmp_path / "explicit", n_train=12)
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "env"))
    assert len(load_dataset("mnist").train_labels) == 11              # env var, <root>/<name>/
    assert len(load_dataset("mnist", tmp_path / "explicit").train_labels) == 12  # --data-dir wins
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path / "env" / "mnist"))
    assert len(load_dataset("mnist").train_labels) == 11              # env var, the directory itself


def test_system_dir_then_sample(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setattr(ds, "SYSTEM_ROOT", str(tmp_path / "none"))
    d, _ = find_data_dir("fashion-mnist")
    assert d == ds.SAMPLE_DIR
    data = load_dataset("fashion-mnist")
    assert data.source == "the bundled sample"
    assert data.train_images.shape == (5000, 28, 28) and data.test_images.shape == (1000, 28, 28)
    assert np.all(np.bincount(data.train_labels, minlength=10) == 500)
    _write_set(tmp_path / "none" / "fashion-mnist", n_train=13)
    assert len(load_dataset("fashion-mnist").train_labels) == 13


def test_not_found_says_how_to_get(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTCONV_DATA", raising=False)
    monkeypatch.setattr(ds, "SYSTEM_ROOT", str(tmp_path / "none"))
    with pytest.raises(DataNotFoundError, match="--data-dir"):
        load_dataset("mnist")
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_dataset("fashion-mnist", data_dir=tmp_path)
    monkeypatch.setenv("FASTCONV_DATA", str(tmp_path))
    with pytest.raises(DataNotFoundError, match="FASTCONV_DATA"):
        load_dataset("fashion-mnist")
    with pytest.raises(ValueError, match="name: got 'cifar'"):
        find_data_dir("cifar")


def test_fake_and_scaling():
    d = load_dataset("fake")
    x = to_float(d.train_images)
    assert x.shape == (len(d.train_labels), 1, 28, 28) and x.dtype == np.float32
    assert x.min() >= 0.0 and x.max() <= 1.0
    g = to_float(d.train_images, "pm1")
    assert g.min() >= -1.0 and g.max() <= 1.0 and g.min() < -0.9 and g.max() > 0.8
    with pytest.raises(ValueError, match="value_range"):
        to_float(d.train_images, "0255")


def test_batches_seeded_and_complete():
    a = batch_indices(10, 4, np.random.default_rng(3))
    b = batch_indices(10, 4, np.random.default_rng(3))
    assert [len(i) for i in a] == [4, 4, 2]
    assert all(np.array_equal(i, j) for i, j in zip(a, b))
    assert sorted(np.concatenate(a).tolist()) == list(range(10))
    assert [len(i) for i in batch_indices(10, 4, None, drop_last=True)] == [4, 4]
    with pytest.raises(ValueError, match="batch_size: got 0"):
        batch_indices(10, 0)
    x = np.arange(10)[:, None]
    got = [xb[:, 0].tolist() for xb, _ in iterate_batches(x, np.arange(10), 3)]
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]


@pytest.mark.parametrize("shape", [(2**31, 2**31, 4), (2**32 - 1, 2**32 - 1, 2**32 - 1)])
def test_huge_header_dims_are_clear_error(shape):
    """Sizes whose product overflows int64 (2**64 wraps to 0) must not pass the length check."""
    from fastconv.data import parse_idx
    data = bytes([0, 0, 0x08, len(shape)]) + np.asarray(shape, ">u4").tobytes()
    expected = 4 + 4 * len(shape) + int(np.prod([int(s) for s in shape], dtype=object))
    with pytest.raises(IdxError, match=rf"got {len(data)} bytes, expected {expected} for a uint8 array of shape"):
        parse_idx(data, name="huge")


@pytest.mark.parametrize("stem", [STEMS[0], STEMS[3]])
def test_empty_split_is_an_error_naming_the_file(tmp_path, stem):
    _write_set(tmp_path)
    shape = (0, 28, 28) if "images" in stem else (0,)
    write_idx(tmp_path / (stem + ".gz"), np.zeros(shape, np.uint8))
    with pytest.raises(IdxError, match=f"path '{tmp_path / (stem + '.gz')}': got 0 (images|labels), "
                                       "expected at least one"):
        load_dataset("mnist", data_dir=tmp_path)


def test_label_out_of_range_names_the_file(tmp_path):
    _write_set(tmp_path)
    write_idx(tmp_path / (STEMS[1] + ".gz"), np.full(30, 10, np.uint8))
    with pytest.raises(IdxError, match=f"path '{tmp_path / (STEMS[1] + '.gz')}': got label 10, expected labels in"):
        load_dataset("mnist", data_dir=tmp_path)


def test_gzip_that_inflates_far_past_its_header_is_stopped_early(tmp_path):
    """10 labels by the header, then 256 MiB of zeros: an IdxError after reading 11 bytes of data,
    not a 256 MiB inflate (gzip's 1000:1 ratio keeps the file at ~250 kB)."""
    p = tmp_path / "bomb.gz"
    z = zlib.compressobj(9, zlib.DEFLATED, 31)  # gzip container
    body = [z.compress(_idx_bytes(np.arange(10, dtype=np.uint8)))]
    chunk = bytes(1 << 20)
    body += [z.compress(chunk) for _ in range(256)]
    p.write_bytes(b"".join(body) + z.flush())
    with pytest.raises(IdxError, match="inflates to more than the 18 bytes its IDX header gives"):
        read_idx(p)


def test_fingerprint_tells_same_sized_sets_apart():
    a, b = ds.fake_dataset(seed=0), ds.fake_dataset(seed=1)
    fa = ds.fingerprint(a.train_images, a.train_labels)
    assert fa == ds.fingerprint(a.train_images.copy(), a.train_labels.copy())
    assert fa != ds.fingerprint(b.train_images, b.train_labels)
    labels = a.train_labels.copy()
    labels[0] = (labels[0] + 1) % 10  # one label differs
    assert fa != ds.fingerprint(a.train_images, labels)
