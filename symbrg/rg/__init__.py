"""Renormalization: Bayesian RG (posterior training flows and information-shell coarse graining) and
exact RG (regulators, Polchinski, Wetterich, LPA).  Depends on core … information.
"""

from symbrg.rg.brg import (  # noqa: F401
    PRESCRIPTIONS, CRITERIA, shell_weight, weights, CoarseGrained, coarse_grain,
    sample_coarse_grained, ModeShell, coarse_grain_modes, shell_moments, PredictiveFlow, predictive_flow,
    nngp_flow, wilsonian_ridge, commuting_diagram, induced_action_modes, information_shell_derivation, nngp_brg_derivation,
)
from symbrg.rg.erg import (  # noqa: F401
    PHI, LAMBDA, K_SCALE, P2, M2, ScalarTheory,
    scalar_theory, dimension, polchinski_rhs, polchinski_residual, heat_equation_residual, gaussian_mode_residual,
    gaussian_mode_flow, canonical, toy_solution, toy_derivation, gaussian_modes_derivation, wilson_shell,
    wilson_shell_derivation, polchinski_derivation, wetterich_lpa, wetterich_derivation, free_theory_derivation, REFERENCES,
)
from symbrg.rg.free_scalar import FreeScalar, radial_trace  # noqa: F401
from symbrg.rg.lpa import (  # noqa: F401
    LPATruncation, FixedPoint, lpa_truncation, fixed_point, convergence_table, gaussian_fixed_point,
    polynomial_couplings, potential_flow, compare_regulators, dimensionless_flow, anomalous_dimension, lpa_derivation,
    KNOWN_LITIM_LPA_3D,
)
from symbrg.rg.posterior import (  # noqa: F401
    GaussianState, as_gaussian, training_flow, training_flow_derivation, orthonormal_span,
)
from symbrg.rg.regulators import (  # noqa: F401
    Z, Y, W, ETA, D, Regulator,
    regulator, REGULATORS, ThresholdFunction, loop_volume, angular_factor,
)
