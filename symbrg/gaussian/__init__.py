"""Gaussian expectations E[f(u) g(v)] over (u, v) ~ N(0, [[q11, q12], [q12, q22]]) and the activation
registry (:func:`register_activation` adds one; plugins use the entry-point group
``symbrg.activations``).  Depends on :mod:`symbrg.core` only.
"""

from symbrg.gaussian.activations import (  # noqa: F401
    X, Activation, activation, REGISTRY, DOCUMENTED, ENTRY_POINT_GROUP, names, numpy_erf, DEGREE,
)
from symbrg.gaussian.expectations import (  # noqa: F401
    Q11, Q12, Q22, QD, QE, QH,
    Expectation, expectation, expectation_derivation, explicit, METHODS, moment,
    with_gap, gap_map, register_activation,
)
