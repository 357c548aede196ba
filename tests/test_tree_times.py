"""benchmarks/tree_times.py: commits exported as trees, the same calls run in each tree's own process
(here on the CPU execution layer, FASTCONV_DEVICE=emu), the table and the one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import tree_times  # noqa: E402

SCRIPT = ROOT / "benchmarks" / "tree_times.py"


def _git_ok():
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True).returncode == 0


def test_settings_rows_and_table():
    assert tree_times.parse_settings(["conv_tile=t128x64", "conv_splits=2", "tf32_vector_gather=False",
                                      "names=('a', 1)"]) == {
        "conv_tile": "t128x64", "conv_splits": 2, "tf32_vector_gather": False, "names": ("a", 1)}
    with pytest.raises(ValueError, match="--set: got 'conv_tile', expected NAME=VALUE"):
        tree_times.parse_settings(["conv_tile"])
    assert tree_times.rows_of(["lenet.conv1 for", "dcgan.d3 backward_w"]) == [("lenet.conv1", "forward"),
                                                                              ("dcgan.d3", "backward_weight")]
    assert len(tree_times.rows_of([])) == 18
    text = tree_times.table([{"tree": "old", "us": {"a forward": 12.34, "b forward": "KeyError: x"}},
                             {"tree": "new", "us": {"a forward": 6.0}}], [("a", "forward"), ("b", "forward")])
    lines = text.splitlines()
    assert lines[1].split() == ["a", "forward", "12.3", "6.0"]
    assert lines[2].split() == ["b", "forward", "error", "-"]
    assert lines[3] == "old b forward: KeyError: x"


@pytest.mark.skipif(not _git_ok(), reason="needs the git history of this checkout")
def test_trees_run_their_own_calls_on_the_cpu_layer(tmp_path, monkeypatch):
    """HEAD exported (fastconv, kernels, benchmarks only), and a folder that is no tree: the tree's
    process runs both rows on the CPU layer and reports a time for each; the other reports its error."""
    (tree,) = tree_times.export(["HEAD"], tmp_path / "trees")
    assert sorted(p.name for p in tree.iterdir()) == ["benchmarks", "fastconv", "kernels"]
    bad = tmp_path / "trees" / "broken"
    (bad / "fastconv").mkdir(parents=True)
    monkeypatch.setenv("FASTCONV_DEVICE", "emu")
    rows = [("lenet.conv1", "forward"), ("dcgan.d3", "backward_weight")]
    shapes = {"lenet.conv1": (128, 1, 8, 8, 4, 5, 5, 1, 2), "dcgan.d3": (128, 8, 5, 5, 8, 3, 3, 2, 1)}
    good, broken = tree_times.time_trees([tree, bad], rows, shapes, settings={"conv_splits": 2}, reps=1,
                                         warmup=0, batch=2, calls=2)
    assert good["tree"] == tree.name and set(good["us"]) == {"lenet.conv1 forward", "dcgan.d3 backward_weight"}
    assert all(isinstance(v, float) and v > 0 for v in good["us"].values()), good
    assert broken["tree"] == "broken" and "(process)" in broken["us"], broken


def test_cli_errors_are_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for args, want in ((["time", str(tmp_path)], f"trees: got ['{tmp_path}'], expected folders holding fastconv/"),
                       (["time", str(ROOT), "--set", "tile"], "--set: got 'tile', expected NAME=VALUE"),
                       (["time", str(ROOT), "--rows", "vgg"], "--rows: got ['vgg'], expected prefixes")):
        p = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env)
        err = p.stderr.strip()
        assert p.returncode == 2 and err.startswith(want) and len(err.splitlines()) == 1, err
