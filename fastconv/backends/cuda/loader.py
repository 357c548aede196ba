"""Finds kernels/*.cu, prepends tuning #defines and builds one cupy.RawModule per (device,
file, defines), memoized. Kernel names are checked against ``config.KERNELS``.

The .cu files live in the top-level ``kernels/`` of a source checkout and in
``fastconv/kernels/`` of an installed wheel (pyproject maps one to the other);
``FASTCONV_KERNEL_DIR`` overrides both.

Tuning #defines, overridable here without editing the kernels: ``FASTCONV_CUDA_DEFINES`` =
"NAME=VALUE,NAME=VALUE" (integer values, e.g. ``CONV_BK_T64=8``) is put in front of every module
built; a ``defines`` argument adds to it and wins on a clash. Modules are memoized per (device,
file, defines), so changing the variable in a running process builds new modules. A bad
override fails to compile (the conv loaders static_assert their thread maps) and is reported as
a RuntimeError naming the defines.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from .config import KERNELS

ENV_DEFINES = "FASTCONV_CUDA_DEFINES"
NVRTC_OPTIONS = ("-std=c++17",)
_INCLUDE = re.compile(r'^\s*#\s*include\s+"([A-Za-z0-9_.]+\.cuh)"\s*$')
_modules: dict = {}
_functions: dict = {}   # (module key, kernel name) -> its cupy Function (CuPy looks a name up anew per call)
_env_cache: dict[str, dict[str, int]] = {}


def _environ_reader(name: str):
    """A function returning the environment variable ``name`` as os.environ holds it (encoded):
    os.environ.get costs about 1 us (it encodes the name and decodes the value), a look-up in the
    mapping os.environ keeps in sync 30 ns."""
    data, encodekey = getattr(os.environ, "_data", None), getattr(os.environ, "encodekey", None)
    if isinstance(data, dict) and encodekey is not None:
        return functools.partial(data.get, encodekey(name))
    return functools.partial(os.environ.get, name)


# FASTCONV_CUDA_DEFINES as os.environ holds it, None when unset: in every launch plan's key
# (fastconv.plan), since the modules a plan's kernels come from depend on it
defines_text = _environ_reader(ENV_DEFINES)


def env_defines() -> dict[str, int]:
    """The tuning #defines of FASTCONV_CUDA_DEFINES ("NAME=VALUE,..."), parsed once per value."""
    raw = os.environ.get(ENV_DEFINES, "")
    parsed = _env_cache.get(raw)
    if parsed is None:
        parsed = {}
        for item in filter(None, (t.strip() for t in raw.split(","))):
            name, eq, value = item.partition("=")
            name, value = name.strip(), value.strip()
            if not (eq and re.fullmatch(r"[A-Z][A-Z0-9_]*", name) and re.fullmatch(r"-?\d+", value)):
                raise ValueError(f"FASTCONV_CUDA_DEFINES: got {item!r} in {raw!r}, expected NAME=INTEGER items "
                                 "separated by commas (e.g. CONV_BK_T64=8,CONV_MIN_BLOCKS=2)")
            parsed[name] = int(value)
        _env_cache[raw] = parsed
    return parsed


def _all_defines(defines: dict | None) -> dict:
    env = env_defines()
    if not defines:
        return env
    return {**env, **defines}


def kernel_dir() -> Path:
    """The directory holding the .cu files (env override, installed package, then checkout)."""
    env = os.environ.get("FASTCONV_KERNEL_DIR")
    here = Path(__file__).resolve().parents[2]           # .../fastconv
    candidates = ([Path(env)] if env else []) + [here / "kernels", here.parent / "kernels"]
    for d in candidates:
        if (d / "conv.cu").is_file():
            return d
    raise FileNotFoundError(
        "CUDA kernel sources: got none in " + ", ".join(str(d) for d in candidates)
        + "; expected conv.cu and the other kernels/*.cu there (reinstall fastconv or set FASTCONV_KERNEL_DIR)")


def source(filename: str, defines: dict | None = None) -> str:
    """The .cu text with local `#include "x.cuh"` lines replaced by the header text and the
    tuning #defines in front (so CuPy's compile cache key covers everything compiled)."""
    if filename not in KERNELS:
        raise ValueError(f"kernel file: got {filename!r}, expected one of {sorted(KERNELS)}")
    d = kernel_dir()
    out = []
    for name, value in sorted((defines or {}).items()):
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise ValueError(f"define: got {name!r}, expected an upper-case macro name")
        out.append(f"#define {name} {int(value)}")
    for line in (d / filename).read_text().splitlines():
        m = _INCLUDE.match(line)
        if m:
            header = (d / m.group(1)).read_text()
            out.append("\n".join(h for h in header.splitlines() if h.strip() != "#pragma once"))
        else:
            out.append(line)
    return "\n".join(out) + "\n"


def module(filename: str, defines: dict | None = None):
    """The compiled cupy.RawModule for this file on the current device with FASTCONV_CUDA_DEFINES
    and ``defines`` in front (built once per device, file and defines)."""
    import cupy as cp

    defines = _all_defines(defines)
    key = _module_key(filename, defines)
    mod = _modules.get(key)
    if mod is None:
        mod = cp.RawModule(code=source(filename, defines), options=NVRTC_OPTIONS)
        _modules[key] = mod
    return mod


def _module_key(filename: str, defines: dict) -> tuple:
    import cupy as cp

    return cp.cuda.Device().id, filename, tuple(sorted(defines.items()))


def function(filename: str, name: str, defines: dict | None = None):
    """The kernel ``name`` of ``filename`` (which must list it in config.KERNELS); looked up in its
    module once per device, file, defines and name."""
    if name not in KERNELS.get(filename, ()):
        raise ValueError(f"kernel: got {name!r}, expected one of the kernels of {filename} listed in "
                         "fastconv.backends.cuda.config.KERNELS")
    import cupy as cp

    key = (_module_key(filename, _all_defines(defines)), name)
    fn = _functions.get(key)
    if fn is not None:
        return fn
    try:
        fn = _functions[key] = module(filename, defines).get_function(name)
    except cp.cuda.compiler.CompileException as e:
        used = _all_defines(defines)
        extra = f" with the #defines {used} (FASTCONV_CUDA_DEFINES / defines)" if used else ""
        raise RuntimeError(f"kernels/{filename}: NVRTC could not compile it for this GPU{extra}:\n{e}") from None
    return fn
