"""fastconv.settings: the one settings mechanism (using, configure, current, reset) and the
kernel-family dispatch that reads it. tests/conftest.py restores the settings after each test."""

import sys
import types

import numpy as np
import pytest

import fastconv
from checks import raises
from fastconv import backend, settings


def test_defaults(monkeypatch):
    monkeypatch.delenv("FASTCONV_KERNELS", raising=False)
    settings.reset()
    s = settings.current()
    assert (s.kernels, s.poison, s.conv_version, s.conv_tile, s.tf32) == ("cupy", False, 3, None, False)
    assert s.tf32_vector_gather is True  # TF32 backward-weight's 16-byte gathers (its vec kernel)
    assert s.autotune is False


@pytest.mark.parametrize("value,want", [("1", True), ("0", False), ("", False), (" 1 ", True)])
def test_autotune_from_the_environment(monkeypatch, value, want):
    monkeypatch.setenv("FASTCONV_AUTOTUNE", value)
    settings.reset()
    assert settings.current().autotune is want


def test_bad_autotune_variable_names_it(monkeypatch):
    monkeypatch.setenv("FASTCONV_AUTOTUNE", "yes")
    settings.reset()
    with raises(ValueError, "FASTCONV_AUTOTUNE: got 'yes'", "expected '1' (conv autotuning) or '0'"):
        settings.current()
    monkeypatch.delenv("FASTCONV_AUTOTUNE")
    settings.reset()


def test_using_changes_inside_and_restores_on_exit_and_on_error():
    before = settings.current()
    with fastconv.using(kernels="numba", poison=True, conv_version=1, conv_tile="t64x64", tf32=True) as inside:
        assert inside == settings.current()
        assert (inside.kernels, inside.poison, inside.conv_version, inside.conv_tile, inside.tf32) == (
            "numba", True, 1, "t64x64", True)
        assert backend.kernel_family() == "numba"
    assert settings.current() == before
    with pytest.raises(KeyError):
        with fastconv.using(poison=True):
            raise KeyError("boom")
    assert settings.current() == before


def test_using_nests():
    with fastconv.using(poison=True):
        with fastconv.using(kernels="numba"):
            assert settings.current().poison and settings.current().kernels == "numba"
        assert settings.current().poison and settings.current().kernels == "cupy"
    assert not settings.current().poison


def test_vector_gather_is_a_bool():
    """tf32_vector_gather is True or False (backward-weight is the only pass with 16-byte gathers); a
    tuple or list of pass names, what it took before, is a one-line error naming the setting."""
    for value in (False, True):
        with fastconv.using(tf32_vector_gather=value) as s:
            assert s.tf32_vector_gather is value
    for value in (("backward_weight",), ["forward", "backward_weight"], ()):
        with pytest.raises(TypeError) as e:
            fastconv.configure(tf32_vector_gather=value)
        assert str(e.value) == f"tf32_vector_gather: got {value!r}, expected True or False"
    assert settings.current().tf32_vector_gather is True


def test_configure_returns_the_settings_before():
    before = fastconv.configure(conv_tile="t32x128")
    assert before.conv_tile is None and settings.current().conv_tile == "t32x128"
    fastconv.configure(conv_tile=None)
    assert settings.current().conv_tile is None


@pytest.mark.parametrize("changes,exc,parts", [
    ({"kernels": "triton"}, ValueError, ("kernels: got 'triton'", "expected one of 'cupy', 'numba'")),
    ({"poison": 1}, TypeError, ("poison: got 1", "expected True or False")),
    ({"tf32": "yes"}, TypeError, ("tf32: got 'yes'", "expected True or False")),
    ({"tf32_vector_gather": 0}, TypeError, ("tf32_vector_gather: got 0", "expected True or False")),
    ({"tf32_vector_gather": ("backward_weight",)}, TypeError, ("tf32_vector_gather: got ('backward_weight',)",
                                                              "expected True or False")),
    ({"conv_version": 2}, ValueError, ("conv_version: got 2", "expected 1 or 3")),
    ({"conv_version": True}, ValueError, ("conv_version: got True", "expected 1 or 3")),
    ({"conv_tile": "t16x16"}, ValueError, ("conv_tile: got 't16x16'", "expected None or one of")),
    ({"winograd_tile": "winograd"}, ValueError, ("winograd_tile: got 'winograd'", "expected None or one of")),
    ({"conv_splits": 0}, ValueError, ("conv_splits: got 0", "expected None or an int in [1, 65535]")),
    ({"conv_splits": 2.0}, ValueError, ("conv_splits: got 2.0", "expected None or an int in [1, 65535]")),
    ({"autotune": "on"}, TypeError, ("autotune: got 'on'", "expected True or False")),
    ({"colour": "red"}, TypeError, ("colour: not a setting", "expected one of autotune, conv_splits, conv_tile")),
])
def test_bad_settings_name_the_setting_and_change_nothing(changes, exc, parts):
    before = settings.current()
    with raises(exc, *parts):
        fastconv.configure(**changes)
    with raises(exc, *parts):
        with fastconv.using(**changes):
            pass
    assert settings.current() == before


def test_bad_conv_tile_lists_the_kernels_tiles():
    """The conv_tile error offers exactly the tiles the kernel tables instantiate and "winograd", each
    of which the setting then takes."""
    import ast
    from fastconv.backends.cuda.config import CONV_TILES, TF32_TILES, WINOGRAD
    with pytest.raises(ValueError) as err:
        fastconv.configure(conv_tile="t16x16")
    offered = ast.literal_eval(str(err.value).split("expected None or one of ", 1)[1])
    assert sorted(offered) == offered and set(offered) == set(CONV_TILES) | set(TF32_TILES) | {WINOGRAD}
    for tile in offered:
        with fastconv.using(conv_tile=tile):
            assert settings.current().conv_tile == tile


def test_environment_is_read_once(monkeypatch):
    monkeypatch.setenv("FASTCONV_KERNELS", " Numba ")
    settings.reset()
    assert settings.current().kernels == "numba"
    monkeypatch.setenv("FASTCONV_KERNELS", "cupy")  # read already: no effect until reset
    assert settings.current().kernels == "numba"
    settings.reset()
    assert settings.current().kernels == "cupy"


def test_set_kernel_family_is_an_alias_of_configure(monkeypatch):
    monkeypatch.setenv("FASTCONV_KERNELS", "numba")
    settings.reset()
    fastconv.set_kernel_family("cupy")
    assert settings.current().kernels == "cupy"
    fastconv.set_kernel_family(None)  # back to what the environment names
    assert settings.current().kernels == "numba"


def test_the_kernels_argument_wins_over_the_setting():
    with fastconv.using(kernels="numba"):
        assert backend.kernel_family("cupy") == "cupy"
        assert backend.kernel_family() == "numba"


class _FakeCupyArray:
    def __init__(self, a):
        self.shape, self.ndim, self.dtype, self.size = a.shape, a.ndim, a.dtype, a.size


def test_dispatch_follows_the_setting(monkeypatch):
    """cupy arrays go to the package of the family in force; numpy arrays always to the CPU."""
    fake = types.ModuleType("cupy")
    fake.ndarray = _FakeCupyArray
    monkeypatch.setitem(sys.modules, "cupy", fake)
    x = _FakeCupyArray(np.ones((2, 2), np.float32))
    loaded = []
    monkeypatch.setattr(backend, "_load", lambda name: loaded.append(name) or types.SimpleNamespace(__name__=name))
    with fastconv.using(kernels="numba"):
        backend.backend_for(x)
        backend.backend_for(x, kernels="cupy")
        backend.backend_for(np.ones(2))
    backend.backend_for(x)
    assert loaded == ["numba", "cuda", "cpu", "cuda"]


@pytest.mark.parametrize("what", ["cnn", "gan"])
def test_autotune_cli_flag(monkeypatch, what):
    """``fastconv train cnn|gan --autotune`` turns the setting on for the run (tf32 left as it was)."""
    import fastconv.train.cnn as cnn
    import fastconv.train.gan as gan
    from fastconv import cli
    seen = []
    result = {"test_accuracy": None, "epochs": 0}
    monkeypatch.setattr(cnn, "train_cnn", lambda cfg: seen.append(settings.current()) or result)
    monkeypatch.setattr(gan, "train_gan", lambda cfg: seen.append(settings.current()) or result)
    cli.main(["train", what, "--dry-run", "--autotune"])
    assert [(s.autotune, s.tf32) for s in seen] == [(True, False)]
