"""The op-family tests: every test of an op family is in tests/ops/test_<family>*.py (the family
names of fastconv/ops/): test_<family>.py, and where it would pass ~400 lines also
test_<family>_hypothesis.py (drawn shapes), test_<family>_torch.py (PyTorch CPU as the oracle),
test_<family>_kernels.py (each CUDA C path on fastconv.emu); linear and optim keep their
every-backend cases in test_<family>_backends.py.

CPU cases run every pass against the float64 loop oracles of tests/oracle.py, at relative L2
error <= 1e-5 for float32 and <= 1e-12 for float64 inputs, on non-zero data; outputs must be new
C-contiguous arrays of the input dtype, and conftest.py here poisons the CPU backend's allocations
with NaN so an unwritten element fails. Each family also checks the one-line error of every bad
argument. Tests taking the `backend` fixture run on every backend of tests/backends.py: "cpu",
"emu" (the CUDA C family on the CPU execution layer), "cupy" and "numba" (GPU, marked gpu), in
float32 with outputs NaN-poisoned; the GPU-only cases are fastconv check's judgement. The numba
kernels under the CUDA simulator are in tests/numba_sim/test_<family>_sim.py (a child process).
"""
