"""Compile CUDA C source text for the CPU and launch its kernels (the engine behind fastconv.emu).

``Module(code, options)`` does what NVRTC does for ``cupy.RawModule``:

1. ``g++ -E`` preprocesses the text with ``-DFASTCONV_EMU`` (macros such as CONV_V2_KERNELS are
   expanded, comments dropped, kernels/common.cuh picks the CPU versions of its PTX wrappers);
2. :func:`rewrite` turns every pointer declaration of a known element type into ``fc_ptr<T>``
   (a pointer that carries the bounds of its allocation), ``reinterpret_cast<T*>`` /
   ``static_cast<T*>`` into ``fc::ptr_cast<T>``, and each ``__shared__`` variable into a
   reference to the block's shared arena; it appends one ``extern "C" fc_entry_<name>`` launch
   function per ``__global__`` kernel;
3. ``g++ -std=c++17 -O1 -shared -fPIC -include runtime.h`` builds a shared library, cached under
   ``$FASTCONV_EMU_CACHE`` (default ``$XDG_CACHE_HOME/fastconv/emu``) by the SHA-256 of the
   source, the options, the compiler flags and the runtime headers, written to a temporary name
   and renamed into place (atomic; parallel builds of one key are harmless).

Kernels are then called through ctypes.PyDLL (the GIL stays held: one launch at a time, which
the runtime's single block state relies on).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
HEADERS = ("runtime.h", "runtime_launch.h", "runtime_builtins.h")
CXX = os.environ.get("CXX", "g++")
# -O1: measured on a loaded 2-core CPU, conv.cu (three tiles x three passes of templates) builds in
# 4.9 s (-O2: 8.1 s, -O0: 2.5 s) and runs its conv passes as fast as at -O2 (-O0: 3-7x slower).
# -fsanitize=bounds with traps: an index outside a fixed-size array (a thread's register tile, a
# __shared__ array through its declared type) stops the launch (SIGILL, see runtime_launch.h).
CXXFLAGS = ("-std=c++17", "-O1", "-shared", "-fPIC", "-w", "-fno-strict-aliasing", "-fsanitize=bounds",
            "-fsanitize-undefined-trap-on-error")
ERRLEN = 2048

_TYPES = (r"(?:const\s+)?(?:volatile\s+)?(?:unsigned\s+long\s+long(?:\s+int)?|unsigned\s+int|unsigned\s+char|"
          r"unsigned\s+short|unsigned\s+long|signed\s+char|long\s+long(?:\s+int)?|unsigned|"
          r"float[1-4]?|double[1-4]?|u?int[1-4]|u?char[24]|u?longlong[24]|int|short|char|long|bool|"
          r"u?int(?:8|16|32|64)_t|size_t{extra})(?:\s+const)?")
_SHARED = re.compile(r"(?P<ext>\bextern\s+)?\b__shared__\s+(?:__align__\s*\(\s*(?P<align>\d+)\s*\)\s+)?"
                     r"(?P<type>(?:const\s+|volatile\s+|unsigned\s+|signed\s+|long\s+)*[A-Za-z_]\w*)\s+"
                     r"(?P<decls>[A-Za-z_]\w*\s*(?:\[[^\];]*\]\s*)*(?:,\s*[A-Za-z_]\w*\s*(?:\[[^\];]*\]\s*)*)*);")
_DECL = re.compile(r"([A-Za-z_]\w*)\s*((?:\[[^\];]*\]\s*)*)")
_CAST = re.compile(r"\b(?:reinterpret_cast|static_cast)\s*<\s*([^<>;]*?)\s*\*\s*>")
_TYPEDEF = re.compile(r"\btypedef\s+([\w\s]+?)\s+(\w+)\s*;")
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?(\w+)\s*\(')
DTYPES = {"b1": np.bool_, "i1": np.int8, "u1": np.uint8, "i2": np.int16, "u2": np.uint16, "i4": np.int32,
           "u4": np.uint32, "i8": np.int64, "u8": np.uint64, "f4": np.float32, "f8": np.float64}


class CompileError(RuntimeError):
    """The C++ compiler rejected the (rewritten) kernel source; the message carries its log."""


class LaunchError(RuntimeError):
    """A kernel stopped on a check (bounds, barrier, warp collective); the message names it."""


class _Launch(ctypes.Structure):  # fc::Launch in runtime.h
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3), ("smem", ctypes.c_longlong),
                ("seed", ctypes.c_ulonglong), ("early_copies", ctypes.c_int)]


class _ArgPtr(ctypes.Structure):  # fc::ArgPtr in runtime.h
    _fields_ = [("ptr", ctypes.c_void_p), ("lo", ctypes.c_void_p), ("hi", ctypes.c_void_p)]


def cache_dir() -> Path:
    env = os.environ.get("FASTCONV_EMU_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "fastconv" / "emu"


def _param_names(text: str, open_paren: int) -> list[str]:
    depth, i = 0, open_paren
    while True:
        ch = text[i]
        depth += ch == "(" or ch == "<"
        depth -= ch == ")" or ch == ">"
        if depth == 0:
            break
        i += 1
    params = [p.strip() for p in re.split(r",(?![^<]*>)", text[open_paren + 1:i]) if p.strip()]
    if params == ["void"]:
        return []
    return [re.findall(r"[A-Za-z_]\w*", p)[-1] for p in params]


def rewrite(pre: str) -> tuple[str, list[tuple[str, list[str]]]]:
    """The preprocessed source with checked pointers and arena-backed shared variables, and the
    kernels it defines as (name, parameter names)."""
    extra = "".join("|" + re.escape(n) for _, n in _TYPEDEF.findall(pre))
    pointer = re.compile(r"\b(" + _TYPES.replace("{extra}", extra) + r")\s*\*\s*(?:const\s+)?(?:__restrict__\s+)?"
                         r"(?=[A-Za-z_])")

    def shared(m):
        t, align, out = m["type"], m["align"], []
        for name, dims in _DECL.findall(m["decls"]):
            dims = re.sub(r"\s+", "", dims)
            if m["ext"]:
                if dims != "[]":
                    raise CompileError(f"extern __shared__ {name}{dims}: expected an unsized array `{name}[]`")
                out.append(f'fc_ptr<{t}> {name} = ::fc::dynamic_shared<{t}>("{name}");')
                continue
            al = align or f"alignof({t})"
            out.append(f"static char fc_key_{name}; {t} (&{name}){dims} = *static_cast<{t} (*){dims}>("
                       f'::fc::shared_alloc(&fc_key_{name}, sizeof({t}{dims}), {al}, "{name}"));')
        return " ".join(out)

    out = _SHARED.sub(shared, pre)
    out = _CAST.sub(lambda m: f"::fc::ptr_cast<{m[1]}>", out)
    out = pointer.sub(lambda m: f"fc_ptr<{m[1]}> ", out)
    kernels = [(m[1], _param_names(out, m.end() - 1)) for m in _KERNEL.finditer(out)]
    return out, kernels


def _entries(kernels) -> str:
    lines = []
    for name, params in kernels:
        names = ", ".join(f'"{p}"' for p in params) or '""'
        lines.append(
            f'extern "C" int fc_entry_{name}(const ::fc::Launch* L, void** a, char* err, int errlen) {{\n'
            f"    static const char* const names[] = {{{names}}};\n"
            f'    return ::fc::launch(L, "{name}", &{name}, a, names, err, errlen);\n}}\n'
            f'extern "C" const char* fc_sig_{name}() {{\n'
            f"    static const std::string s = ::fc::signature(&{name});\n    return s.c_str();\n}}\n")
    table = ";".join(f"{n}:{','.join(p)}" for n, p in kernels)
    lines.append(f'extern "C" const char* fc_kernels() {{ return "{table}"; }}\n')
    return "".join(lines)


def _run(cmd, stdin=None):
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True)


def _defines(options) -> list[str]:
    """The -D options of an NVRTC option list; other options that change code are refused."""
    out = []
    for o in options:
        if re.fullmatch(r"(-|--)std=c\+\+(11|14|17|20)", o) or re.fullmatch(r"(-|--)(gpu-)?arch(itecture)?=\S+", o):
            continue  # C++17 is always used; the target architecture does not apply to the CPU
        if re.fullmatch(r"-D[A-Za-z_]\w*(=\S*)?", o):
            out.append(o)
            continue
        raise ValueError(f"options: got {o!r}, expected -std=c++NN, -arch=..., or -DNAME[=VALUE] "
                         "(the CPU build of fastconv.emu understands no other NVRTC option)")
    return out


def build(code: str, options=()) -> Path:
    """The path of the shared library for ``code`` (built, or taken from the cache)."""
    defines = _defines(options)
    h = hashlib.sha256()
    for part in (code, "\0".join(defines), CXX, "\0".join(CXXFLAGS), *((HERE / f).read_text() for f in HEADERS)):
        h.update(part.encode())
        h.update(b"\1")
    d = cache_dir()
    so = d / f"{h.hexdigest()[:32]}.so"
    if so.is_file():
        return so
    d.mkdir(parents=True, exist_ok=True)
    pre = _run([CXX, "-E", "-P", "-x", "c++", "-std=c++17", "-DFASTCONV_EMU=1", *defines, "-"], stdin=code)
    if pre.returncode:
        raise CompileError(f"preprocessing failed:\n{pre.stderr}")
    text, kernels = rewrite(pre.stdout)
    fd, src = tempfile.mkstemp(suffix=".cpp", dir=d)
    with os.fdopen(fd, "w") as f:
        f.write(text + "\n" + _entries(kernels))
    tmp = f"{src[:-4]}.so"
    try:
        proc = _run([CXX, *CXXFLAGS, "-include", str(HERE / "runtime.h"), "-o", tmp, src])
        if proc.returncode:  # g++ quotes the offending lines; the rewritten file is not kept
            raise CompileError(f"g++ could not compile the rewritten kernel source:\n{proc.stderr[-6000:]}")
        os.replace(tmp, so)
    finally:
        for path in (src, tmp):
            if os.path.exists(path):
                os.unlink(path)
    return so


class Kernel:
    """One __global__ function of a built module: its parameter names and C types."""

    def __init__(self, lib, name: str, params: list[str]):
        self.name = name
        self.params = params
        sig = getattr(lib, f"fc_sig_{name}")
        sig.restype = ctypes.c_char_p
        self.codes = sig().decode().split(",") if params else []
        self._entry = getattr(lib, f"fc_entry_{name}")
        self._entry.restype = ctypes.c_int
        self._entry.argtypes = [ctypes.POINTER(_Launch), ctypes.POINTER(ctypes.c_void_p), ctypes.c_char_p,
                                ctypes.c_int]

    def pack(self, args, pointer_of):
        """ctypes storage for ``args`` (kept alive by the caller) and the void* array.

        ``pointer_of(arg, name, code)`` returns (ptr, lo, hi) for an array argument."""
        if len(args) != len(self.codes):
            raise TypeError(f"kernel {self.name}: got {len(args)} arguments, expected {len(self.codes)} "
                            f"({', '.join(self.params)})")
        keep = []
        for a, pname, code in zip(args, self.params, self.codes):
            if code.startswith("p"):
                ptr, lo, hi = pointer_of(a, pname, code[1:])
                keep.append(_ArgPtr(ptr, lo, hi))
                continue
            want = np.dtype(DTYPES[code])
            if not isinstance(a, np.generic) or a.dtype != want:
                got = f"numpy {a.dtype}" if isinstance(a, np.generic) else type(a).__name__
                raise TypeError(f"kernel {self.name} argument {pname}: got {got} {a}, expected a numpy {want} "
                                "scalar (the C type of the parameter; a GPU would read the wrong bytes)")
            keep.append(ctypes.create_string_buffer(a.tobytes(), len(a.tobytes())))
        ptrs = (ctypes.c_void_p * max(1, len(keep)))(*[ctypes.addressof(k) for k in keep])
        return keep, ptrs

    def run(self, grid, block, smem: int, seed: int, ptrs, early_copies: bool = False) -> None:
        launch = _Launch((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), smem, seed, int(early_copies))
        err = ctypes.create_string_buffer(ERRLEN)
        if self._entry(ctypes.byref(launch), ptrs, err, ERRLEN):
            raise LaunchError(err.value.decode(errors="replace"))


class Module:
    """The kernels of one source text, compiled for the CPU."""

    def __init__(self, code: str, options=()):
        self.path = build(code, options)
        self._lib = ctypes.PyDLL(str(self.path))
        table = self._lib.fc_kernels
        table.restype = ctypes.c_char_p
        self.kernels: dict[str, list[str]] = {}
        for item in filter(None, table().decode().split(";")):
            name, _, params = item.partition(":")
            self.kernels[name] = [p for p in params.split(",") if p]
        self._cache: dict[str, Kernel] = {}

    def kernel(self, name: str) -> Kernel:
        k = self._cache.get(name)
        if k is None:
            if name not in self.kernels:
                raise AttributeError(f"kernel: got {name!r}, expected one of the __global__ functions "
                                     f"{sorted(self.kernels)}")
            k = self._cache[name] = Kernel(self._lib, name, self.kernels[name])
        return k
