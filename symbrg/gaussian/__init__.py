"""Gaussian expectations E[f(u) g(v)] over (u, v) ~ N(0, [[q11, q12], [q12, q22]]) and the activation
registry (:func:`register_activation` adds one; plugins use the entry-point group
``symbrg.activations``).  Depends on :mod:`symbrg.core` only.
"""

from symbrg.gaussian.activations import (  # noqa: F401
    DEGREE,
    DOCUMENTED,
    ENTRY_POINT_GROUP,
    REGISTRY,
    Activation,
    X,
    activation,
    names,
    numpy_erf,
)
from symbrg.gaussian.expectations import (  # noqa: F401
    METHODS,
    Q11,
    Q12,
    Q22,
    QD,
    QE,
    QH,
    Expectation,
    expectation,
    expectation_derivation,
    explicit,
    gap_map,
    moment,
    register_activation,
    with_gap,
)
