"""What the tests that build kernels/*.cu with nvcc share (tests/test_bandwidth_static.py,
tests/test_conv_build.py, tests/test_cuda_static.py, tests/conv_sass.py): finding the CUDA tools,
building a kernel file to a cubin once per run, reading ptxas -v and nvdisasm output, and finding the loops of a function's SASS."""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path


def find_tool(name):
    """The path of a CUDA tool: on PATH, else in an ``nvidia-*`` wheel (nvidia/<pkg>/bin/); None if neither."""
    found = shutil.which(name)
    if found:
        return found
    try:
        import nvidia
    except ImportError:
        return None
    for root in map(Path, nvidia.__path__):
        for path in root.glob(f"*/bin/{name}"):
            return str(path)
    return None


# Where build_once keeps its builds: one folder per (what, inputs), shared by the test processes of a
# run (pytest-xdist workers) and by later runs.
BUILD_CACHE = Path(tempfile.gettempdir()) / f"fastconv-test-builds-{os.getuid()}"


def build_once(what, inputs, make):
    """The folder in which make(folder) has written ``what``'s build, run once per ``inputs`` (the
    text the build depends on) under a file lock: a second process waits for the first one's build
    and reads it. The costly builds (nvcc of the conv files, 10-20 s each; numba's PTX of a conv
    kernel, 2-20 s) are read by tests that xdist spreads over its workers."""
    folder = BUILD_CACHE / f"{what}-{hashlib.sha256(inputs.encode()).hexdigest()[:32]}"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "done").exists():
            make(folder)
            (folder / "done").touch()
    return folder


def compile_cubin(filename, arch, defines=None):
    """(nvcc's exit status, its log with ptxas -v, the cubin path) of kernels/<filename> as the loader
    hands it to NVRTC (with the tuning ``defines``), built by nvcc for ``arch`` once per source text,
    arch and nvcc (build_once)."""
    from fastconv.backends.cuda import loader
    src = loader.source(filename, defines)
    nvcc = find_tool("nvcc") or "nvcc"
    cmd = [nvcc, f"-arch={arch}", "-cubin", "-std=c++17", "-Xptxas", "-v", "-x", "cu"]

    def make(folder):
        (folder / filename).write_text(src)
        p = subprocess.run(cmd + ["-o", str(folder / "out.cubin"), str(folder / filename)], capture_output=True,
                           text=True)
        (folder / "result.json").write_text(json.dumps({"returncode": p.returncode, "log": p.stderr}))
    stamp = str(os.stat(shutil.which(nvcc) or nvcc).st_mtime_ns)
    folder = build_once(f"{filename}-{arch}", "\0".join(cmd + [stamp, src]), make)
    done = json.loads((folder / "result.json").read_text())
    return done["returncode"], done["log"], folder / "out.cubin"


def build_cubin(filename, arch, defines=None):
    """(cubin path, ptxas report) of kernels/<filename> for ``arch`` (compile_cubin), the report as
    ptxas_report. Raises RuntimeError with nvcc's log when the build fails."""
    returncode, log, cubin = compile_cubin(filename, arch, defines)
    if returncode != 0:
        raise RuntimeError(log)
    return cubin, ptxas_report(log)


def sass_functions(cubin, nvdisasm):
    """{function: SASS lines} of a cubin, disassembled by ``nvdisasm`` (its path)."""
    return sass_by_function(subprocess.run([nvdisasm, "-c", str(cubin)], capture_output=True, text=True,
                                           check=True).stdout)


def _sections(text, header):
    """{name: the lines after its header line, up to the next header}; ``header`` is a regex whose
    group 1 is the name (lines before the first header belong to none)."""
    out, name = {}, None
    for line in text.splitlines():
        m = re.search(header, line)
        if m:
            name = m.group(1)
            out[name] = []
        elif name:
            out[name].append(line)
    return out


def ptxas_report(log):
    """{kernel: (registers, spill store bytes, spill load bytes)} from ptxas -v."""
    res = {}
    for name, lines in _sections(log, r"Compiling entry function '(\w+)'").items():
        text = "\n".join(lines)
        regs = re.search(r"Used (\d+) registers", text)
        spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
        res[name] = (int(regs.group(1)), int(spills.group(1)), int(spills.group(2)))
    return res


def sass_by_function(text):
    """{function name: its SASS lines} from nvdisasm, which prints one .text.<name> section per function."""
    return _sections(text, r"^\s*\.section\s+\.text\.(\S+?),")


def opcodes(lines):
    """The opcodes of SASS lines (predicates dropped, modifiers kept: 'LDGSTS.E.BYPASS.128')."""
    ops = []
    for line in lines:
        m = re.match(r"\s*/\*[0-9a-f]+\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_.]*)", line)
        if m:
            ops.append(m.group(1))
    return ops


def loop_spans(lines):
    """(first, last) line of every loop in one function's SASS lines: a backward branch to a label."""
    labels = {m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"\s*\.(L_x_\d+):", line))}
    return [(labels[m.group(1)], i) for i, line in enumerate(lines)
            if (m := re.search(r"\bBRA\b.*?\.?(L_x_\d+)", line)) and labels.get(m.group(1), i + 1) < i]


def loops(lines):
    """The opcodes of every loop in one function's SASS lines, its backward branch last."""
    return [opcodes(lines[a:b + 1]) for a, b in loop_spans(lines)]
