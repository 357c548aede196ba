"""The checks the CPU execution layer makes that a GPU does not, on deliberately broken kernels
(tests/emu/broken_kernels.cu), and the CuPy stand-in's refusals: every one must fire with a
message naming the kernel, block, thread and what went wrong."""

import numpy as np
import pytest

import fastconv.emu as emu
from emu_helpers import HERE, module_source
from fastconv.emu.build import LaunchError


@pytest.fixture(scope="module")
def broken(cp):
    mod = cp.RawModule(code=module_source(HERE / "broken_kernels.cu"), options=("-std=c++17",))
    return mod.get_function


def test_out_of_bounds_read_names_kernel_block_thread_and_index(cp, broken):
    x = cp.asarray(np.arange(300, dtype=np.float32))
    y = cp.empty(300, np.float32)
    with pytest.raises(LaunchError, match=r"kernel shift_left_oob, block \(2, 0, 0\), thread \(43, 0, 0\): "
                                          r"out-of-bounds access to x: element 300 of 300"):
        broken("shift_left_oob")((3,), (128,), (x, y, np.int32(300)))


def test_in_bounds_twin_runs(cp, broken):
    x = cp.asarray(np.arange(300, dtype=np.float32))
    y = cp.empty(300, np.float32)
    broken("shift_left_oob")((3,), (128,), (x, y, np.int32(299)))
    assert np.array_equal(y.get()[:299], np.arange(1, 300, dtype=np.float32))


def test_missing_barrier_fails_in_shuffled_order_only(cp, broken):
    x = np.arange(128, dtype=np.float32)
    want = np.concatenate([x[63::-1], x[:63:-1]])
    y = cp.empty(128, np.float32)
    with emu.shuffled(seed=3):
        broken("reverse64")((2,), (64,), (cp.asarray(x), y, np.int32(1)))
        assert np.array_equal(y.get(), want), "the correct kernel (with the barrier) must pass shuffled"
        broken("reverse64")((2,), (64,), (cp.asarray(x), y, np.int32(0)))
        assert not np.array_equal(y.get(), want), "a missing __syncthreads went unnoticed in shuffled order"


def test_uninitialised_shared_memory_reads_nan(cp, broken):
    out = cp.zeros(1, np.float32)
    broken("sum_half_written")((1,), (64,), (cp.asarray(np.ones(64, np.float32)), out))
    assert np.isnan(out.get()[0]), "a read of unwritten shared memory must see the NaN poison"


def test_misaligned_vector_access(cp, broken):
    with pytest.raises(LaunchError, match=r"misaligned 16-byte access to x at byte offset 4"):
        broken("misaligned_float4")((1,), (1,), (cp.zeros(8, np.float32), cp.empty(1, np.float32)))


def test_divergent_warp_collective(cp, broken):
    with pytest.raises(LaunchError, match=r"kernel divergent_shuffle.*(exited|different warp collectives)"):
        broken("divergent_shuffle")((1,), (32,), (cp.empty(32, np.float32),))


def test_barrier_deadlock(cp, broken):
    with pytest.raises(LaunchError, match=r"kernel barrier_in_branch"):
        broken("barrier_in_branch")((1,), (64,), (cp.empty(64, np.float32),))


def test_shared_array_overflow(cp, broken):
    with pytest.raises(LaunchError, match=r"out-of-bounds access to a: element 32 of 32"):
        broken("shared_overflow")((1,), (32,), (cp.empty(32, np.float32),))


@pytest.mark.parametrize("args,match", [
    ((np.float32(1), np.int32(3)), r"argument y: got float32, expected a device array"),
    ((np.zeros(3, np.float32), np.int32(3)), r"argument x: got ndarray, expected a device array"),
    (("dev", np.int64(3)), r"argument n: got numpy int64 3, expected a numpy int32 scalar"),
    (("dev", 3), r"argument n: got int 3, expected a numpy int32 scalar"),
    (("int", np.int32(3)), r"argument x: got a int32 array, expected float32"),
])
def test_argument_types_are_checked(cp, broken, args, match):
    first = {"dev": cp.zeros(3, np.float32), "int": cp.zeros(3, np.int32)}
    if isinstance(args[0], str):
        full = (first[args[0]], cp.zeros(3, np.float32), args[1])
    elif isinstance(args[0], np.ndarray):
        full = (args[0], cp.zeros(3, np.float32), args[1])
    else:
        full = (cp.zeros(3, np.float32), args[0], args[1])
    with pytest.raises(TypeError, match=match):
        broken("shift_left_oob")((1,), (32,), full)


@pytest.mark.parametrize("grid,block,smem,match", [
    ((1,), (1025,), 0, r"block \(1025, 1, 1\)"),
    ((0,), (32,), 0, r"grid \(0, 1, 1\)"),
    ((1, 70000), (32,), 0, r"grid \(1, 70000, 1\)"),
    ((1,), (32,), 64 * 1024, r"shared_mem=65536"),
])
def test_launches_cuda_refuses_are_refused(cp, broken, grid, block, smem, match):
    with pytest.raises(cp.cuda.driver.CUDADriverError, match=match):
        broken("shift_left_oob")(grid, block, (cp.zeros(3, np.float32), cp.zeros(3, np.float32), np.int32(0)),
                                 shared_mem=smem)


def test_host_arrays_do_not_mix_with_device_arrays(cp):
    with pytest.raises(TypeError, match=r"host memory"):
        cp.ones(3, np.float32) + np.ones(3, np.float32)


def test_compile_error_is_a_compile_exception(cp):
    with pytest.raises(cp.cuda.compiler.CompileException, match=r"undeclared|not declared"):
        cp.RawModule(code='extern "C" __global__ void k(float* y) { y[0] = undeclared_name; }').get_function("k")


def test_unknown_cupy_api_fails_loudly(cp):
    with pytest.raises(AttributeError, match=r"cupy.fft is not offered by the CPU stand-in"):
        cp.fft


@pytest.mark.parametrize("name,args,match", [
    ("divide_by_zero", lambda cp: (cp.zeros(1, np.int32), np.int32(0)), r"kernel divide_by_zero, block \(0, 0, 0\), "
                                                                         r"thread \(0, 0, 0\): SIGFPE"),
    ("stack_overflow", lambda cp: (cp.zeros(1, np.int32),), r"kernel stack_overflow.*SIGSEGV"),
    ("local_array_oob", lambda cp: (cp.zeros(1, np.float32), np.int32(4)),
     r"kernel local_array_oob.*an index outside a fixed-size local or __shared__ array"),
])
def test_faults_end_the_launch_not_the_process(cp, broken, name, args, match):
    with pytest.raises(LaunchError, match=match):
        broken(name)((1,), (1,), args(cp))
    y = cp.zeros(300, np.float32)
    broken("shift_left_oob")((3,), (128,), (cp.ones(300, np.float32), y, np.int32(299)))
    assert y.get()[:299].sum() == 299, "the layer must run normally after a fault"
