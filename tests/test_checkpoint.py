"""Checkpoints: exact round trip (arrays, metadata, RNG state), atomic writes, damaged files."""

import errno
import json
import os

import numpy as np
import pytest

from fastconv.checkpoint import (CheckpointError, atomic_write, load_checkpoint, rng_from_state, rng_state,
                                 save_checkpoint)


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


def test_edited_metadata_is_detected(tmp_path, rng):
    p = tmp_path / "c.safetensors"
    save_checkpoint(p, _tensors(rng), {"kind": "cnn", "epoch": 3, "step": 30})
    blob = p.read_bytes()
    old, new = b'\\"epoch\\": 3', b'\\"epoch\\": 9'  # the metadata JSON sits, escaped, in the header JSON
    assert blob.count(old) == 1
    p.write_bytes(blob.replace(old, new))
    with pytest.raises(CheckpointError, match=r"c\.safetensors.*SHA-256 of its metadata and arrays"):
        load_checkpoint(p)


def test_missing_metadata_key_or_array_names_file_and_key(tmp_path):
    p = tmp_path / "m.safetensors"
    save_checkpoint(p, {"a": np.ones(1)}, {"kind": "cnn", "epoch": 1, "arch": {"channels": [4]}})
    load_checkpoint(p, kind="cnn", keys=("epoch", "arch.channels"), arrays=("a",))
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*no metadata key 'step'"):
        load_checkpoint(p, kind="cnn", keys=("epoch", "step"))
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*no metadata key 'arch.hidden'"):
        load_checkpoint(p, keys=("arch.hidden",))
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*no metadata key 'epoch.x'"):
        load_checkpoint(p, keys=("epoch.x",))  # a level that is not an object
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*no array 'b'"):
        load_checkpoint(p, arrays=("a", "b"))
    save_checkpoint(p, {"a": np.ones(1)}, {"epoch": 1})
    with pytest.raises(CheckpointError, match=r"m\.safetensors.*no metadata key 'kind'"):
        load_checkpoint(p, kind="cnn")


def test_kill_between_temp_write_and_rename_keeps_old_checkpoint(tmp_path):
    """A writer that dies after writing the temp file but before os.replace (the window a SIGKILL
    can hit) leaves the previous checkpoint intact; the next save removes the stale temp file."""
    import subprocess
    import sys

    p = tmp_path / "c.safetensors"
    save_checkpoint(p, {"a": np.ones(3)}, {"kind": "cnn", "epoch": 1})
    code = ("import os, sys, numpy as np\n"
            "from fastconv.checkpoint import save_checkpoint\n"
            "os.replace = lambda *a, **k: os._exit(137)  # die right before the rename\n"
            "save_checkpoint(sys.argv[1], {'a': np.full(3, 2.0)}, {'kind': 'cnn', 'epoch': 2})\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code, str(p)], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 137, r.stderr
    stale = [n for n in os.listdir(tmp_path) if n.startswith(".c.safetensors.") and n.endswith(".tmp")]
    assert len(stale) == 1 and os.path.getsize(tmp_path / stale[0]) > 0  # the new data was written, not renamed
    got, meta = load_checkpoint(p, kind="cnn")
    assert meta["epoch"] == 1 and got["a"][0] == 1.0
    (tmp_path / "other.tmp").write_bytes(b"x")  # not ours: left alone
    save_checkpoint(p, {"a": np.full(3, 3.0)}, {"kind": "cnn", "epoch": 3})
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors", "other.tmp"]
    assert load_checkpoint(p)[1]["epoch"] == 3


def test_files_get_the_umask_mode_not_0600(tmp_path):
    old = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "c.safetensors", {"a": np.ones(2)}, {"kind": "t"})
        os.umask(0o027)
        atomic_write(tmp_path / "r.json", b"{}")
    finally:
        os.umask(old)
    assert os.stat(tmp_path / "c.safetensors").st_mode & 0o777 == 0o644
    assert os.stat(tmp_path / "r.json").st_mode & 0o777 == 0o640


def test_write_error_names_the_path_and_keeps_the_old_file(tmp_path, monkeypatch):
    p = tmp_path / "results.json"
    atomic_write(p, b"old")

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError) as e:
        atomic_write(p, b"new")
    assert e.value.errno == errno.ENOSPC and e.value.filename == str(p)
    assert p.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["results.json"]
