"""symbrg: symbolic-numeric Bayesian renormalization group for neural-network field theories.

The package derives infinite-width kernels (NNGP, NTK), Fisher information metrics, Bayesian-RG and
exact-RG flows symbolically, proves that information-shell coarse graining of the generalized
cos-net is the momentum-shell ERG of a free scalar, and compiles every result to NumPy and mpmath.
"""
from .activations import Activation, activation
from .errors import SymbrgError

__version__ = "0.1.0"

__all__ = ["Activation", "activation", "SymbrgError", "__version__"]

try:  # the kernel engine is the package's front door
    from .kernel import mlp  # noqa: F401
    __all__.append("mlp")
except ImportError:  # pragma: no cover - during bootstrap only
    pass
