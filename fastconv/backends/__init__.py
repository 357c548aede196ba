"""The backend packages: cpu (the NumPy path), cuda (the CUDA C kernels) and numba; fastconv.backend
picks one per op call."""


def fused_activation(functions, activation, pass_, *arrays, slope=0.0):
    """A fused activation ("relu", "leaky_relu", "tanh"; argcheck.FUSED_ACTIVATIONS) run by a backend's
    own activation functions: ``functions`` maps "<name>_forward" / "<name>_backward" to them (a
    module's globals()), ``pass_`` picks one, leaky_relu's also get ``slope``. None: arrays[0] as it
    is (the forward's x, the backward's dy)."""
    if activation is None:
        return arrays[0]
    return functions[f"{activation}_{pass_}"](*arrays, *((slope,) if activation == "leaky_relu" else ()))
