"""One test file per op family (tests/ops/test_<family>.py, the family names of fastconv/ops/).

Each checks every pass of its ops on the CPU path against the float64 loop oracles of
tests/oracle.py, at relative L2 error <= 1e-5 for float32 and <= 1e-12 for float64 inputs, on
non-zero data; outputs must be new C-contiguous arrays of the input dtype, and conftest.py here
poisons the CPU backend's allocations with NaN so an unwritten element fails. Each also checks
the one-line error every bad argument of its ops raises. The GPU kernel families run the same
ops in tests/gpu/test_gpu_ops.py (marked gpu; the cases of fastconv.check), the numba kernels
also under the CUDA simulator (tests/numba_sim/).
"""
