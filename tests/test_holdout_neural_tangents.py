"""Held-out check against neural-tangents (Novak et al. 2020), an independent implementation of the
infinite-width kernels: symbrg's NNGP and NTK Gram matrices of MLPs must equal ``stax.serial``'s
to 1e-13 relative, for six activations, depths 1-6 and both parameterizations.  neural-tangents
is not a dependency (it pins old jax releases): the module is skipped where it is not installed,
e.g. ``pip install neural-tangents 'jax==0.4.30' 'jaxlib==0.4.30' 'tf2jax==0.3.6'``."""
from __future__ import annotations

import numpy as np
import pytest

import symbrg

jax = pytest.importorskip("jax")
try:
    from neural_tangents import stax
except ImportError as exc:           # installed but incompatible with this jax
    pytest.skip(f"neural-tangents does not import: {exc}", allow_module_level=True)

RTOL = 1e-13
SW, SB = 1.3, 0.2


def _stax_activation(name: str):
    return {"relu": stax.Relu(), "erf": stax.Erf(), "gelu": stax.Gelu(approximate=False),
            "abs": stax.Abs(), "sin": stax.Sin(), "leaky_relu:0.1": stax.LeakyRelu(0.1)}[name]


def _neural_tangents(name: str, depth: int, parameterization: str, width: int, x, y):
    jax.config.update("jax_enable_x64", True)
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, W_std=SW, b_std=SB, parameterization=parameterization),
                   _stax_activation(name)]
    layers.append(stax.Dense(1, W_std=SW, b_std=SB, parameterization=parameterization))
    k = stax.serial(*layers)[2](x, y, ("nngp", "ntk"))
    return np.asarray(k.nngp), np.asarray(k.ntk)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("name", ["relu", "erf", "gelu", "abs", "sin", "leaky_relu:0.1"])
@pytest.mark.parametrize("depth", [1, 3, 6])
def test_kernels_equal_neural_tangents(name, depth):
    rng = np.random.default_rng(depth)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(7, 5))
    nngp, ntk = _neural_tangents(name, depth, "ntk", 512, x, y)
    arch = symbrg.mlp(name, depth=depth, sigma_w=SW, sigma_b=SB)
    assert _relative(arch.nngp(x, y), nngp) < RTOL
    assert _relative(arch.ntk(x, y), ntk) < RTOL


def test_standard_parameterization_equals_neural_tangents():
    x = np.random.default_rng(0).normal(size=(12, 5))
    nngp, ntk = _neural_tangents("relu", 3, "standard", 64, x, None)
    arch = symbrg.mlp("relu", depth=3, sigma_w=SW, sigma_b=SB, parameterization="standard", width=64)
    assert _relative(arch.nngp(x), nngp) < RTOL
    assert _relative(arch.ntk(x), ntk) < RTOL


def test_the_holdout_can_fail():
    """A plausible slip (sigma_b forgotten in the readout layer's network) is seen by the check."""
    x = np.random.default_rng(0).normal(size=(12, 5))
    nngp, _ = _neural_tangents("relu", 2, "ntk", 512, x, None)
    assert _relative(symbrg.mlp("relu", depth=2, sigma_w=SW, sigma_b=0.0).nngp(x), nngp) > 1e-3
