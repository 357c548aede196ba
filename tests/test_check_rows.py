"""``fastconv check`` without a GPU: its exit status, and its (op, pass) rows against the functions
the kernel families define."""

import subprocess
import sys
import types


def test_check_exits_2_without_a_gpu():
    code = ("import sys, runpy; sys.modules['cupy'] = None; sys.argv = ['fastconv.check']; "
            "runpy.run_module('fastconv.check', run_name='__main__', alter_sys=True)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "fastconv check: no usable CUDA GPU" in out.stderr and "expected a machine with an NVIDIA GPU" in out.stderr
    from fastconv.backend import gpu_available
    if not gpu_available():  # the plain command, where it cannot find a GPU either
        out = subprocess.run([sys.executable, "-m", "fastconv.check"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 2 and "no usable CUDA GPU" in out.stderr, (out.returncode, out.stderr)


# every (op, pass) row fastconv.check's case functions produce
_CHECK_ROWS = (
    [("conv2d", p) for p in ("forward", "backward_data", "backward_weight", "backward_bias")]
    + [(a, p) for a in ("relu", "leaky_relu", "sigmoid", "tanh") for p in ("forward", "backward")]
    + [("max_pool2d", p) for p in ("forward", "argmax", "backward")]
    + [("avg_pool2d", f"{p}_{t}") for p in ("forward", "backward") for t in ("incl_pad", "excl_pad")]
    + [("relu_max_pool2d", p) for p in ("forward", "argmax", "backward")]
    + [("linear", p) for p in ("forward", "backward_data", "backward_weight", "backward_bias")]
    + [("batchnorm", f"{p}_{m}") for p in ("forward", "mean_invstd", "running_stats", "backward", "backward_params")
       for m in ("train", "eval")]
    + [("dropout", p) for p in ("mask", "forward", "backward")]
    + [("softmax_xent", "loss"), ("softmax_xent", "backward"), ("bce_logits", "loss"), ("bce_logits", "backward")]
    + [("sgd_update", "m0.0"), ("sgd_update", "m0.9_nesterov"), ("adam_update", "step3")])


def _defs(package_dir):
    """The top-level functions of every module of a backend package: defined, or assigned from a
    factory (``relu_forward, relu_backward = _backend_functions("relu")``)."""
    import ast
    names = set()
    for path in package_dir.glob("*.py"):
        for f in ast.parse(path.read_text()).body:
            if isinstance(f, ast.FunctionDef):
                names.add(f.name)
            elif isinstance(f, ast.Assign) and isinstance(f.value, ast.Call):
                for t in f.targets:
                    names.update(e.id for e in (t.elts if isinstance(t, ast.Tuple) else [t]) if isinstance(e, ast.Name))
    return names


def test_check_rows_map_to_backend_functions():
    from pathlib import Path

    import fastconv.backends as pkg
    from fastconv import check
    cupy_ops = _defs(Path(pkg.__file__).parent / "cuda")
    expect = {("conv2d", "backward_bias"): "conv2d_backward_bias", ("max_pool2d", "argmax"): "max_pool2d_forward",
              ("avg_pool2d", "backward_excl_pad"): "avg_pool2d_backward",
              ("linear", "backward_bias"): "linear_backward_weight",
              ("batchnorm", "mean_invstd_eval"): "batchnorm_forward",
              ("batchnorm", "backward_params_train"): "batchnorm_backward", ("dropout", "mask"): "dropout_forward",
              ("softmax_xent", "loss"): "softmax_cross_entropy", ("bce_logits", "backward"): "bce_with_logits",
              ("sgd_update", "m0.9_nesterov"): "sgd_update", ("tanh", "backward"): "tanh_backward"}
    for op, ps in _CHECK_ROWS:
        fn = check.backend_function(op, ps)
        assert fn in cupy_ops, f"check row {op} {ps} -> {fn}, which fastconv.backends.cuda does not define"
        if (op, ps) in expect:
            assert fn == expect[(op, ps)], (op, ps, fn)


def test_check_labels_numba_fallback_rows(monkeypatch):
    """Rows whose op the numba family does not define are labelled numba->cupy (fastconv.backend.op
    runs the cupy kernel for them); the label follows the real numba package's definitions."""
    from pathlib import Path

    import fastconv.backends as pkg
    from fastconv import check
    numba_ops = _defs(Path(pkg.__file__).parent / "numba")
    stand_in = types.ModuleType("fastconv.backends.numba")
    for name in numba_ops:
        setattr(stand_in, name, lambda *a: None)
    monkeypatch.setitem(sys.modules, "fastconv.backends.numba", stand_in)
    labels = {(op, ps): check.family_label("numba", op, ps) for op, ps in _CHECK_ROWS}
    own = {k for k, v in labels.items() if v == "numba"}
    assert own == {(op, ps) for op, ps in _CHECK_ROWS if op in ("conv2d", "relu", "leaky_relu", "tanh",
                                                                  "max_pool2d", "avg_pool2d")}
    assert all(v == "numba->cupy" for k, v in labels.items() if k not in own)
    assert check.family_label("cupy", "linear", "forward") == "cupy"
