"""Information geometry: Fisher metrics I_AB = E[∂_A log p ∂_B log p], Jeffreys priors, spectra and
information-shell splits.  Depends on core, gaussian and kernels.
"""

from symbrg.information.fisher import (  # noqa: F401
    FisherMetric,
    JeffreysPrior,
    ShellSplit,
    check_kl_curvature,
    check_reparametrization,
    check_score_identity,
    exponential_family,
    fisher_dense,
    fisher_diagonal,
    gaussian_expectation,
    gaussian_family,
    gaussian_process,
    gaussian_regression,
    gp_fisher,
    jeffreys_prior,
    kernel_operator_spectrum,
    mercer_features,
    network_expression,
    network_fisher,
    readout_fisher_spectrum,
    readout_jacobian,
    shell_split,
)
from symbrg.information.spectrum import (  # noqa: F401
    CRITERIA,
    REDUCTIONS,
    Choice,
    SplitCriterion,
)
