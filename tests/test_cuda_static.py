"""CUDA C static checks (no GPU needed): every kernels/*.cu, as the loader hands it to NVRTC,
compiles with nvcc for sm_80 and sm_90; every kernel name the launcher may use is an entry point;
the conv kernels do not spill registers. Skipped when nvcc is not on PATH."""

import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from fastconv.backends import cuda_loader
from fastconv.backends.cuda_config import CONV_FILES_CHECKED_FOR_SPILLS, KERNELS

NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.skipif(NVCC is None, reason="nvcc is not on PATH: CUDA C static checks need it")
ARCHS = ("sm_80", "sm_90")


def _compile(tmp, filename, arch):
    src = tmp / f"{arch}_{filename}"
    src.write_text(cuda_loader.source(filename))
    out = tmp / f"{arch}_{filename}.cubin"
    proc = subprocess.run([NVCC, f"-arch={arch}", "-cubin", "-std=c++17", "-Xptxas", "-v", "-x", "cu",
                           "-o", str(out), str(src)], capture_output=True, text=True)
    names = set()
    if proc.returncode == 0:
        # entry points: cuobjdump's symbol table when it is installed, else ptxas's report
        names = set(re.findall(r"Compiling entry function '([^']+)'", proc.stderr))
        if shutil.which("cuobjdump"):
            dump = subprocess.run([shutil.which("cuobjdump"), "-symbols", str(out)], capture_output=True,
                                  text=True).stdout
            names = set(re.findall(r"STO_ENTRY\s+(\S+)", dump)) or names
    return proc.returncode, proc.stderr, names


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cubin")
    jobs = [(f, a) for f in KERNELS for a in ARCHS]
    with ThreadPoolExecutor(max_workers=4) as ex:
        results = list(ex.map(lambda fa: _compile(tmp, *fa), jobs))
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
    assert on_disk == set(KERNELS), f"kernels/*.cu {sorted(on_disk)} vs cuda_config.KERNELS {sorted(KERNELS)}"


def test_launcher_names_are_registered():
    """Every kernel name written in the launcher is one the registry (and so the build) has."""
    from pathlib import Path

    import fastconv.backends.cuda_config as cfg
    text = (Path(cfg.__file__).parent / "cuda.py").read_text()
    every = {n for names in KERNELS.values() for n in names}
    literal = set(re.findall(r'"([a-z0-9_]+_v[12](?:_t\d+x\d+)?)"', text))
    assert literal <= every, sorted(literal - every)
    for pattern in re.findall(r'f"([a-z0-9_]+_v2)_\{tile\}"', text):
        for tile in cfg.CONV_TILES:
            assert f"{pattern}_{tile}" in every
    for stem in re.findall(r'_(?:unary|binary)\("([a-z_]+)"', text):
        assert f"{stem}_v1" in every
    for stem in re.findall(r'_(?:unary|binary)\("([a-z_]+)".*vec=True', text):
        assert f"{stem}_v2" in every


def test_versions_header_lists_each_file():
    d = cuda_loader.kernel_dir()
    for f in KERNELS:
        head = (d / f).read_text()[:600]
        assert "Kernel versions" in head or "versions" in head.lower(), f"{f} has no versions header"
