"""CUDA C static checks (no GPU needed): every kernels/*.cu, as the loader hands it to NVRTC,
compiles with nvcc for sm_80 and sm_90; every kernel name the launcher may use is an entry point;
the conv kernels do not spill registers. Skipped when nvcc is not on PATH."""

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from fastconv.backends.cuda import loader as cuda_loader
from cuda_build import compile_cubin
from fastconv.backends.cuda.config import CONV_FILES_CHECKED_FOR_SPILLS, KERNELS

NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: CUDA C static checks need it")
ARCHS = ("sm_80", "sm_90")


def _compile(filename, arch):
    """(nvcc's exit status, its log, the entry points) of kernels/<filename> for arch."""
    returncode, log, cubin = compile_cubin(filename, arch)
    names = set()
    if returncode == 0:
        # entry points: cuobjdump's symbol table when it is installed, else ptxas's report
        names = set(re.findall(r"Compiling entry function '([^']+)'", log))
        if shutil.which("cuobjdump"):
            dump = subprocess.run([shutil.which("cuobjdump"), "-symbols", str(cubin)], capture_output=True,
                                  text=True).stdout
            names = set(re.findall(r"STO_ENTRY\s+(\S+)", dump)) or names
    return returncode, log, names


@pytest.fixture(scope="module")
def builds():
    jobs = [(f, a) for f in KERNELS for a in ARCHS]
    with ThreadPoolExecutor(max_workers=4) as ex:
        results = list(ex.map(lambda fa: _compile(*fa), jobs))
    return dict(zip(jobs, results))


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", sorted(KERNELS))
def test_compiles(builds, filename, arch):
    rc, log, _ = builds[(filename, arch)]
    assert rc == 0, f"kernels/{filename} does not compile for {arch}:\n{log}"
    assert "warning" not in log.lower(), f"kernels/{filename} compiles with warnings for {arch}:\n{log}"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", sorted(KERNELS))
def test_launched_names_exist(builds, filename, arch):
    rc, log, names = builds[(filename, arch)]
    assert rc == 0, log
    missing = sorted(set(KERNELS[filename]) - names)
    assert not missing, f"kernels/{filename} ({arch}) lacks entry points {missing}; it has {sorted(names)}"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", CONV_FILES_CHECKED_FOR_SPILLS)
def test_conv_kernels_do_not_spill(builds, filename, arch):
    rc, log, _ = builds[(filename, arch)]
    assert rc == 0, log
    spills = re.findall(r"(\d+) bytes spill stores", log)
    assert spills and all(int(s) == 0 for s in spills), f"register spills in kernels/{filename} ({arch}):\n{log}"


def test_every_cu_file_is_known():
    on_disk = {p.name for p in cuda_loader.kernel_dir().glob("*.cu")}
    assert on_disk == set(KERNELS), f"kernels/*.cu {sorted(on_disk)} vs fastconv.backends.cuda.config.KERNELS {sorted(KERNELS)}"


def test_launcher_names_are_registered():
    """Every kernel name written in the launcher is one the registry (and so the build) has."""
    from pathlib import Path

    import fastconv.backends.cuda.config as cfg
    text = "\n".join(p.read_text() for p in sorted(Path(cfg.__file__).parent.glob("*.py")))
    every = {n for names in KERNELS.values() for n in names}
    literal = set(re.findall(r'"([a-z0-9_]+_v\d(?:_t\d+x\d+)?)"', text))
    assert literal <= every, sorted(literal - every)
    for stem in re.findall(r'_gemm\("([a-z0-9_]+)"', text):  # the v3 core: f"{kernel}_v3_{tile}"
        for tile in cfg.CONV_TILES:
            assert f"{stem}_v3_{tile}" in every
    for stem in re.findall(r'_(?:unary|binary)\("([a-z_]+)"', text):
        assert f"{stem}_v1" in every
    for stem in re.findall(r'_(?:unary|binary)\("([a-z_]+)".*vec=True', text):
        assert f"{stem}_v2" in every


# ---------------------------------------------------------------------------------------------
# the kernel conventions (docs/ARCHITECTURE.md), checked on the text (these run without nvcc too)

_ENTRY = re.compile(r'extern "C" __global__\s+(?:void\s+)?(?:__launch_bounds__\([^)]*\)\s+)?(?:void\s+)?'
                    r'(\w+?)(?:##(\w+))?\s*\(')
_BYTES = re.compile(r"bytes|\d\s*B\b|\bB\b")
_FLOPS = re.compile(r"FLOP|Work:")


def _header(lines):
    """The leading // comment block of a .cu file (its versions header)."""
    out = []
    for line in lines:
        if not line.startswith("//"):
            break
        out.append(line)
    return "\n".join(out)


def _entry_points(lines):
    """(line number, kernel name or name pattern, comment block right above it) for each
    ``extern "C" __global__``; inside a #define (CONV_V3_KERNELS) the comment above the #define
    counts and the name is a pattern (``conv2d_forward_v3_*``)."""
    out = []
    for i, line in enumerate(lines):
        if 'extern "C" __global__' not in line:
            continue
        text = " ".join(t.rstrip().rstrip("\\") for t in lines[i:i + 3])
        m = _ENTRY.search(text)
        assert m, f"line {i + 1}: cannot read the kernel name in {line.strip()!r}"
        name = m.group(1) + ("*" if m.group(2) else "")
        if m.group(2) and m.group(1).isupper():  # NAME##_forward_v1: the macro's argument is the prefix
            name = "*" + m.group(2)
        j = i
        while j > 0 and lines[j - 1].rstrip().endswith("\\"):
            j -= 1
        k, comment = j - 1, []
        while k >= 0 and lines[k].lstrip().startswith("//"):
            comment.insert(0, lines[k])
            k -= 1
        out.append((i + 1, name, "\n".join(comment)))
    return out


def _header_names(header):
    """Kernel names and patterns the versions header mentions (``relu_*_v2`` style allowed, not a
    bare ``*_v1``)."""
    return {t for t in re.findall(r"[A-Za-z0-9_*]+_v\d+(?:_[A-Za-z0-9_*]+)?", header) if not t.startswith("*")}


@pytest.mark.parametrize("filename", sorted(KERNELS))
def test_each_kernel_states_its_work(filename):
    """A comment on each kernel gives the bytes it moves and the FLOPs it does."""
    lines = cuda_loader.source(filename).splitlines()  # headers inlined: conv_v3.cuh's entry macro
    entries = _entry_points(lines)
    assert entries, f"{filename}: no extern \"C\" __global__ kernels found"
    bad = [f"line {n} {name}" for n, name, c in entries if not (_BYTES.search(c) and _FLOPS.search(c))]
    assert not bad, (f"kernels/{filename}: kernels without a comment right above them giving bytes moved "
                     f"('bytes' or 'N B') and FLOPs ('FLOPs' or 'Work:'): {bad}")


@pytest.mark.parametrize("filename", sorted(KERNELS))
def test_versions_header_lists_each_kernel(filename):
    """The header comment names every entry point of the file (itself or by a pattern such as
    relu_*_v2) and every entry point the launcher may use is defined in the text."""
    from fnmatch import fnmatchcase
    lines = cuda_loader.source(filename).splitlines()  # headers inlined: conv_v3.cuh's entry macro
    header = _header(lines)
    assert "Kernel versions" in header, f"kernels/{filename}: no 'Kernel versions' header"
    names = _header_names(header)
    entries = [name for _, name, _ in _entry_points(lines)]
    concrete = []  # a macro's name pattern stands for the registry names it generates
    for e in entries:
        if "*" in e:
            made = [k for k in KERNELS[filename] if fnmatchcase(k, e)]
            assert made, f"kernels/{filename}: {e} generates no kernel that fastconv.backends.cuda.config.KERNELS lists"
            concrete += made
        else:
            concrete.append(e)
    missing = [e for e in concrete if not any(fnmatchcase(e, t) for t in names)]
    assert not missing, f"kernels/{filename}: the versions header does not name {missing}; it names {sorted(names)}"
    for k in KERNELS[filename]:  # the registry's names are all defined (directly or by the tile macro)
        assert any(fnmatchcase(k, e) for e in entries), f"kernels/{filename}: {k} is not an entry point"


def test_numba_kernels_state_their_work():
    """Each numba kernel body the launcher compiles has a docstring giving bytes and FLOPs."""
    import ast
    from pathlib import Path

    import fastconv.backends as pkg
    d = Path(pkg.__file__).parent
    launcher = ast.parse((d / "numba" / "driver.py").read_text())
    params = next(n.value for n in ast.walk(launcher) if isinstance(n, ast.Assign)
                  and any(isinstance(t, ast.Name) and t.id == "_PARAMS" for t in n.targets))
    names = [k.value for k in params.keys]
    bodies = {}
    for path in (d / "numba").glob("*.py"):
        tree = ast.parse(path.read_text())
        funcs = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
        bodies.update((name, ast.get_docstring(f) or "") for name, f in funcs.items())
        # kernels built by a factory per tile (name = _factory(tile)): the factory's inner kernel
        for a in tree.body:
            if (isinstance(a, ast.Assign) and isinstance(a.value, ast.Call) and isinstance(a.targets[0], ast.Name)
                    and isinstance(a.value.func, ast.Name) and a.value.func.id in funcs):
                inner = [f for f in ast.walk(funcs[a.value.func.id]) if isinstance(f, ast.FunctionDef)][1:]
                bodies[a.targets[0].id] = ast.get_docstring(inner[0]) if inner else ""
    assert set(names) <= set(bodies), sorted(set(names) - set(bodies))
    bad = [n for n in names if not (_BYTES.search(bodies[n]) and _FLOPS.search(bodies[n]))]
    assert not bad, f"fastconv/backends/numba: kernels whose docstring does not give bytes and FLOPs: {bad}"
