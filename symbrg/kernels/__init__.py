"""Infinite-width kernels: layers carrying their NNGP/NTK maps, architectures, the NNGP/NTK programs
and the Gram drivers.  K^{l+1} = σ_b² + σ_w² E[φ(u)φ(v)], (u, v) ~ N(0, K^l).
Depends on :mod:`symbrg.core` and :mod:`symbrg.gaussian`.
"""

from symbrg.kernels.architecture import (  # noqa: F401
    DIM,
    S11,
    S12,
    S22,
    Architecture,
    Dense,
    Nonlinearity,
    mlp,
    serial,
)
