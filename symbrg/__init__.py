"""symbrg: symbolic-numeric Bayesian renormalization group for neural-network field theories.

The package derives infinite-width kernels (NNGP, NTK), Fisher information metrics, Bayesian-RG and
exact-RG flows symbolically, proves that information-shell coarse graining of the generalized
cos-net is the momentum-shell ERG of a free scalar, and compiles every result to NumPy and mpmath.

Front door (each name is loaded from its module on first use)::

    symbrg.mlp, symbrg.serial, symbrg.Dense, symbrg.Nonlinearity       kernel programs (symbrg.kernels.architecture)
    symbrg.expectation, symbrg.register_activation                    Gaussian expectations, user activations (symbrg.gaussian)
    symbrg.gaussian_regression, symbrg.gaussian_family, symbrg.fisher_dense, symbrg.fisher_diagonal,
    symbrg.shell_split, symbrg.jeffreys_prior                          Fisher metrics (symbrg.information.fisher)
    symbrg.coarse_grain, symbrg.nngp_flow, symbrg.predictive_flow,
    symbrg.training_flow, symbrg.GaussianState                         Bayesian RG (symbrg.rg.brg, symbrg.rg.posterior)
    symbrg.scalar_theory, symbrg.regulator, symbrg.wetterich_lpa       exact RG (symbrg.rg.erg, symbrg.rg.regulators)
    symbrg.generalized_cosnet, symbrg.cosnet_erg_certificate           the cos-net theorem (symbrg.cosnet.theory, symbrg.cosnet.theorem)
    symbrg.ensembles.networks, symbrg.train, symbrg.preset, symbrg.run_shell_experiment,
    symbrg.load_run, symbrg.Run                                        ensembles (symbrg.ensembles.networks, ...)
    symbrg.Derivation                                                  derivations (symbrg.core.derivation)
    symbrg.check_identity, symbrg.verify, symbrg.symbol                the identity verifier, the symbol registry (symbrg.core)
"""
from __future__ import annotations

import importlib
import sys
from typing import Any

from symbrg.core import errors, limits
from symbrg.core.errors import SymbrgError
from symbrg.gaussian.activations import Activation, activation

# The two modules every user meets keep their short public names: ``from symbrg.errors import
# InvalidArgument`` and ``symbrg.limits.lifted(depth=...)`` (they live in the core layer).
sys.modules.setdefault("symbrg.errors", errors)
sys.modules.setdefault("symbrg.limits", limits)

#: The version of this source tree (``symbrg --version`` prefers the installed package metadata).
__version__ = "0.1.0"

_LAZY = {
    "kernels.architecture": ("mlp", "serial", "Dense", "Nonlinearity", "Architecture"),
    "gaussian.expectations": ("expectation", "register_activation"),
    "core.codegen": ("Program",),
    "core.derivation": ("Derivation",),
    "core.identities": ("check_identity", "verify", "Verification"),
    "core.symbols": ("symbol",),
    "information.fisher": ("gaussian_regression", "gaussian_family", "gaussian_process", "exponential_family",
               "fisher_dense", "fisher_diagonal", "shell_split", "jeffreys_prior"),
    "rg.brg": ("coarse_grain", "nngp_flow", "predictive_flow"),
    "rg.posterior": ("training_flow", "GaussianState"),
    "rg.erg": ("scalar_theory", "wetterich_lpa"),
    "rg.regulators": ("regulator",),
    "cosnet.theory": ("generalized_cosnet",),
    "cosnet.theorem": ("cosnet_erg_certificate",),
    "ensembles.networks": ("network",),
    "ensembles.training": ("train",),
    "ensembles.experiment": ("preset", "run_shell_experiment", "load_run", "Run"),
}
_WHERE = {name: module for module, names in _LAZY.items() for name in names}

__all__ = ["Activation", "activation", "SymbrgError", "errors", "limits", "__version__", *sorted(_WHERE)]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'symbrg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
