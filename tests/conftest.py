"""Suite-wide guard: a test may not leave global numeric state changed for the tests after it.

A leaked ``mpmath.mp.dps`` once changed a committed document only when the whole suite ran (the
certificate now fixes its own precision, and this guard names any test that leaks)."""
import mpmath
import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _no_leaked_global_precision():
    dps, err = mpmath.mp.dps, np.geterr()
    yield
    leaked = [f"mpmath.mp.dps {dps} -> {mpmath.mp.dps}"] if mpmath.mp.dps != dps else []
    leaked += [f"numpy.seterr {err} -> {np.geterr()}"] if np.geterr() != err else []
    mpmath.mp.dps = dps
    np.seterr(**err)
    assert not leaked, "test changed global numeric state: " + "; ".join(leaked)
