"""Information geometry: Fisher metrics I_AB = E[∂_A log p ∂_B log p], Jeffreys priors, spectra and
information-shell splits.  Depends on core, gaussian and kernels.
"""

from symbrg.information.fisher import (  # noqa: F401
    FisherMetric, JeffreysPrior, gaussian_family, gaussian_regression, gaussian_process, exponential_family,
    network_expression, network_fisher, gp_fisher, jeffreys_prior, gaussian_expectation, check_reparametrization,
    check_kl_curvature, check_score_identity, fisher_dense, fisher_diagonal, shell_split, ShellSplit,
    readout_jacobian, kernel_operator_spectrum, readout_fisher_spectrum, mercer_features,
)
from symbrg.information.spectrum import (  # noqa: F401
    REDUCTIONS, CRITERIA,
)
