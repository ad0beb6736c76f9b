"""symbrg: symbolic-numeric Bayesian renormalization group for neural-network field theories.

The package derives infinite-width kernels (NNGP, NTK), Fisher information metrics, Bayesian-RG and
exact-RG flows symbolically, proves that information-shell coarse graining of the generalized
cos-net is the momentum-shell ERG of a free scalar, and compiles every result to NumPy and mpmath.

Front door (each name is loaded from its module on first use)::

    symbrg.mlp, symbrg.serial, symbrg.Dense, symbrg.Nonlinearity       kernel programs (symbrg.kernel)
    symbrg.expectation                                                 Gaussian expectations (symbrg.gaussian)
    symbrg.gaussian_regression, symbrg.gaussian_family, symbrg.fisher_dense, symbrg.fisher_diagonal,
    symbrg.shell_split, symbrg.jeffreys_prior                          Fisher metrics (symbrg.fisher)
    symbrg.coarse_grain, symbrg.nngp_flow, symbrg.predictive_flow,
    symbrg.training_flow, symbrg.GaussianState                         Bayesian RG (symbrg.brg, symbrg.posterior)
    symbrg.scalar_theory, symbrg.regulator, symbrg.wetterich_lpa       exact RG (symbrg.erg, symbrg.regulators)
    symbrg.generalized_cosnet, symbrg.cosnet_erg_certificate           the cos-net theorem (symbrg.cosnet, symbrg.theorem)
    symbrg.network, symbrg.train, symbrg.preset, symbrg.run_shell_experiment   ensembles (symbrg.network, ...)
    symbrg.Derivation, symbrg.check_identity                           derivations (symbrg.derivation)
"""
from __future__ import annotations

import importlib
from typing import Any

from .activations import Activation, activation
from .errors import SymbrgError

__version__ = "0.1.0"

_LAZY = {
    "kernel": ("mlp", "serial", "Dense", "Nonlinearity", "Architecture"),
    "gaussian": ("expectation",),
    "codegen": ("Program",),
    "derivation": ("Derivation", "check_identity"),
    "fisher": ("gaussian_regression", "gaussian_family", "gaussian_process", "exponential_family",
               "fisher_dense", "fisher_diagonal", "shell_split", "jeffreys_prior"),
    "brg": ("coarse_grain", "nngp_flow", "predictive_flow"),
    "posterior": ("training_flow", "GaussianState"),
    "erg": ("scalar_theory", "wetterich_lpa"),
    "regulators": ("regulator",),
    "cosnet": ("generalized_cosnet",),
    "theorem": ("cosnet_erg_certificate",),
    "network": ("network",),
    "training": ("train",),
    "experiment": ("preset", "run_shell_experiment"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["Activation", "activation", "SymbrgError", "__version__", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'symbrg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
