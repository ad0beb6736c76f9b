r"""Fisher information metrics in closed form (symbolic); numeric estimators re-exported.

Job: derive :math:`I_{AB}(\theta) = \mathbb E_{y\sim p(\cdot|\theta)}[\partial_A\log p\,\partial_B\log p]`
for parametric families (Gaussian regression, multivariate Gaussians and Gaussian processes,
exponential families, finite-width networks) together with Jeffreys priors and the identities the
metric must satisfy.  (Work in progress: the numeric estimators live in :mod:`symbrg.spectrum`.)
"""
from __future__ import annotations

from .spectrum import (ShellSplit, fisher_dense, fisher_diagonal, kernel_operator_spectrum,  # noqa: F401
                       readout_fisher_spectrum, readout_jacobian, shell_split)
