"""scripts/main_job.sh's data step with apt-get, sudo and id replaced by stubs first on PATH: the
full data when present, installed with apt-get as root or with passwordless sudo, else the
bundled sample and one line on how to get the full set."""

import json
import os
import shutil
import subprocess

import pytest

from fastconv.data.datasets import SAMPLE_DIR

from .helpers import ROOT, env

SCRIPT = os.path.join(ROOT, "scripts", "main_job.sh")
STUBS = {
    # apt-get: logs its arguments; "install" puts the (sample's) IDX files where the package would
    "apt-get": '#!/bin/sh\necho "apt-get $*" >> "$STUB_LOG"\n'
               'case "$*" in *install*) mkdir -p "$FASTCONV_APT_DATA_DIR" && '
               'cp "$STUB_FILES"/*.gz "$FASTCONV_APT_DATA_DIR"/;; esac\n',
    "id": '#!/bin/sh\necho "$STUB_UID"\n',
    # sudo -n CMD: runs CMD when passwordless sudo is on, else fails as sudo -n does
    "sudo": '#!/bin/sh\necho "sudo $*" >> "$STUB_LOG"\n[ "$STUB_SUDO" = 1 ] || exit 1\n'
            '[ "$1" = -n ] && shift\nexec "$@"\n',
}


@pytest.fixture
def stubbed(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    e = env()
    e.update(PATH=f"{bin_dir}{os.pathsep}{e['PATH']}", STUB_LOG=str(tmp_path / "log"), STUB_FILES=SAMPLE_DIR,
             FASTCONV_APT_DATA_DIR=str(tmp_path / "datasets" / "fashion-mnist"), STUB_UID="1000", STUB_SUDO="0",
             FASTCONV_NO_VENV="1", OUT=str(tmp_path / "runs"))
    e.pop("FASTCONV_DATA", None)
    return tmp_path, e


def _data_step(e):
    r = subprocess.run(["bash", SCRIPT, "--data-only"], env=e, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()


def _log(tmp_path):
    p = tmp_path / "log"
    return p.read_text().splitlines() if p.exists() else []


def test_full_data_present_is_used_without_apt(stubbed):
    tmp_path, e = stubbed
    shutil.copytree(SAMPLE_DIR, e["FASTCONV_APT_DATA_DIR"])
    lines = _data_step(e)
    assert lines[-1] == f"full {e['FASTCONV_APT_DATA_DIR']}"
    assert _log(tmp_path) == []


@pytest.mark.parametrize("uid, sudo, via", [("0", "0", "apt-get"), ("1000", "1", "sudo -n apt-get")])
def test_missing_data_is_installed_with_apt_as_root_or_with_sudo(stubbed, uid, sudo, via):
    tmp_path, e = stubbed
    e.update(STUB_UID=uid, STUB_SUDO=sudo)
    lines = _data_step(e)
    assert lines[-1] == f"full {e['FASTCONV_APT_DATA_DIR']}"
    assert f"{via} install -y dataset-fashion-mnist" in "\n".join(_log(tmp_path))
    assert any("installing dataset-fashion-mnist with apt-get" in line for line in lines)


def test_without_root_or_sudo_the_sample_is_used_and_one_line_says_how_to_get_the_full_set(stubbed):
    tmp_path, e = stubbed
    lines = _data_step(e)
    assert lines[-1] == f"sample {SAMPLE_DIR}"
    assert len(lines) == 2 and "bundled 6,000-image sample" in lines[0]
    assert "sudo apt-get install dataset-fashion-mnist" in lines[0] and "FASTCONV_DATA" in lines[0]
    assert not any(line.startswith("apt-get") for line in _log(tmp_path))  # sudo -n was tried and refused


def test_whole_job_records_which_data_ran(stubbed):
    """The whole script (dry-run trainers: fake data, seconds) after apt installed the data."""
    tmp_path, e = stubbed
    e.update(STUB_UID="0")
    r = subprocess.run(["bash", SCRIPT, "--dry-run", "--device", "cpu"], env=e, capture_output=True, text=True,
                       timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert summary["data_kind"] == "full" and summary["device"] == "cpu"
    assert 0.0 <= summary["cnn_test_accuracy"] <= 1.0 and summary["dcgan_iterations"] == 2
    assert summary["cdcgan_iterations"] == 2 and summary["cdcgan_fd"] is None  # fake data: trained, not scored
