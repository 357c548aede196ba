"""Checkpoints: exact round trip (arrays, metadata, RNG state), atomic writes, damaged files."""

import json
import os

import numpy as np
import pytest

from fastconv.checkpoint import CheckpointError, load_checkpoint, rng_from_state, rng_state, save_checkpoint


def _tensors(rng):
    return {"model.0.weight": rng.standard_normal((4, 3, 2, 2)).astype(np.float32),
            "optim.step": np.array(7, dtype=np.int64),
            "optim.0.m": rng.standard_normal(5)}


def test_roundtrip_exact(tmp_path, rng):
    t = _tensors(rng)
    save_checkpoint(tmp_path / "c.safetensors", t, {"kind": "cnn", "epoch": 3, "config": {"lr": 0.1}})
    got, meta = load_checkpoint(tmp_path / "c.safetensors", kind="cnn")
    assert set(got) == set(t)
    for k in t:
        assert got[k].dtype == t[k].dtype and got[k].shape == t[k].shape
        np.testing.assert_array_equal(got[k], t[k])
    assert meta["epoch"] == 3 and meta["config"] == {"lr": 0.1}
    assert [p.name for p in tmp_path.iterdir()] == ["c.safetensors"]  # no temp files left


def test_rng_state_exact(tmp_path):
    for bg in (np.random.PCG64, np.random.MT19937, np.random.Philox, np.random.SFC64):
        g = np.random.Generator(bg(99))
        g.standard_normal(3)
        g.integers(0, 10)  # leaves a buffered 32-bit half in PCG64's state
        save_checkpoint(tmp_path / "r.safetensors", {"x": np.zeros(1)}, {"kind": "t", "rng": rng_state(g)})
        _, meta = load_checkpoint(tmp_path / "r.safetensors")
        h = rng_from_state(json.loads(json.dumps(meta["rng"])))
        np.testing.assert_array_equal(g.standard_normal(20), h.standard_normal(20))
        assert g.integers(0, 2**62) == h.integers(0, 2**62)


def test_overwrite_is_atomic_replace(tmp_path, rng):
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, {"a": np.ones(3)}, {"kind": "cnn", "epoch": 1})
    save_checkpoint(p, {"a": np.full(3, 2.0)}, {"kind": "cnn", "epoch": 2})
    got, meta = load_checkpoint(p)
    assert meta["epoch"] == 2 and got["a"][0] == 2.0
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors"]


def test_missing_and_wrong_kind(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.safetensors")
    save_checkpoint(tmp_path / "g.safetensors", {"a": np.ones(1)}, {"kind": "gan"})
    with pytest.raises(CheckpointError, match="holds a 'gan' model, expected a 'cnn'"):
        load_checkpoint(tmp_path / "g.safetensors", kind="cnn")


@pytest.mark.parametrize("damage", ["truncate", "flip_data", "flip_header", "empty", "garbage"])
def test_damaged_file_is_clear_error(tmp_path, rng, damage):
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, _tensors(rng), {"kind": "cnn"})
    blob = bytearray(p.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) - 17]
    elif damage == "flip_data":
        blob[-5] ^= 0x40
    elif damage == "flip_header":
        blob[12] ^= 0xFF
    elif damage == "empty":
        blob = bytearray()
    else:
        blob = bytearray(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all!")
    p.write_bytes(bytes(blob))
    with pytest.raises(CheckpointError, match=r"c\.safetensors.*(truncated or corrupt|not a valid)"):
        load_checkpoint(p)


def test_bad_rng_state():
    with pytest.raises(CheckpointError, match="rng state"):
        rng_from_state({"bit_generator": "NoSuchBitGen"})
