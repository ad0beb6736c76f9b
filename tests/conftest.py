"""Suite-wide guards: property tests are reproducible, and a test may not leave global numeric state
changed for the tests after it.

A leaked ``mpmath.mp.dps`` once changed a committed document only when the whole suite ran (the
certificate now fixes its own precision, and this guard names any test that leaks)."""
import os

import mpmath
import numpy as np
import pytest
from hypothesis import settings

# Property tests draw the same examples on every run (CI must not pass or fail by luck); set
# HYPOTHESIS_PROFILE=explore to draw fresh ones.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "deterministic"))


@pytest.fixture(autouse=True)
def _no_leaked_global_precision():
    dps, err = mpmath.mp.dps, np.geterr()
    yield
    leaked = [f"mpmath.mp.dps {dps} -> {mpmath.mp.dps}"] if mpmath.mp.dps != dps else []
    leaked += [f"numpy.seterr {err} -> {np.geterr()}"] if np.geterr() != err else []
    mpmath.mp.dps = dps
    np.seterr(**err)
    assert not leaked, "test changed global numeric state: " + "; ".join(leaked)
