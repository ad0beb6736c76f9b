r"""PyTorch models as symbrg networks: Fisher metrics and coarse graining of a user's trained model.

Job: read a ``torch.nn.Sequential`` of ``Linear`` layers and elementwise activations into a
:class:`~symbrg.ensembles.networks.Network` (standard parameterization) and an
:class:`~symbrg.ensembles.networks.Ensemble` holding its trained weights (one member per model), so
that everything symbrg does with an ensemble -- forward passes, parameter Jacobians, the empirical
Fisher metric and its information-shell split -- runs on the model as trained.

Defining equations.  ``Linear(n_in, n_out)`` computes :math:`z = W h + b` with
:math:`W \in \mathbb R^{n_{out}\times n_{in}}`: the standard parameterization of
:mod:`symbrg.ensembles.networks` with :math:`s_w = s_b = 1`, so the weights are copied unchanged.
The prior, which the Fisher split weighs against (:math:`\sigma_w/\sqrt{n_{in}}` for W,
:math:`\sigma_b` for b), defaults to PyTorch's own initialization,
:math:`W_{ij}, b_i \sim U(-n_{in}^{-1/2}, n_{in}^{-1/2})`, of standard deviation
:math:`(3 n_{in})^{-1/2}`: :math:`\sigma_w = 3^{-1/2}`, :math:`\sigma_b^{(l)} = (3 n_{in}^{(l)})^{-1/2}`.
The Fisher metric of a Gaussian likelihood with noise variance :math:`\sigma_\epsilon^2` is
:math:`I = J^\top J / \sigma_\epsilon^2` with :math:`J_{pa} = \partial f(x_p)/\partial\theta_a`
(:func:`symbrg.information.spectrum.fisher_dense`).

torch is imported only when a model is converted (``pip install 'symbrg[torch]'``).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from symbrg.core.errors import InvalidArgument, ShapeMismatch, Unsupported
from symbrg.ensembles.networks import Ensemble, Network, network

if TYPE_CHECKING:
    import torch

__all__ = ["from_torch", "to_torch", "ACTIVATIONS"]

#: torch.nn activation class name -> symbrg activation name (parameters read from the module).
ACTIVATIONS = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "SiLU": "swish", "Identity": "identity",
               "Softplus": "softplus", "GELU": "gelu", "LeakyReLU": "leaky_relu"}


def _activation_name(module: torch.nn.Module, where: str) -> str:
    """The symbrg name of a torch activation module, with its parameter (refusing what differs)."""
    import torch
    kind = type(module).__name__
    if kind not in ACTIVATIONS:
        raise Unsupported("model", f"{where} is a {kind}; supported: Linear and "
                                   f"{', '.join(sorted(ACTIVATIONS))}")
    if kind == "GELU" and module.approximate != "none":
        raise Unsupported("model", f"{where}: GELU(approximate={module.approximate!r}) has no symbrg "
                                   "kernel; use approximate='none' (the erf form)")
    if isinstance(module, torch.nn.Softplus) and (module.beta != 1 or module.threshold < 20):
        raise Unsupported("model", f"{where}: only Softplus(beta=1) is supported")
    if kind == "LeakyReLU":
        return f"leaky_relu:{module.negative_slope!r}"
    return ACTIVATIONS[kind]


def _layers(model: torch.nn.Module) -> tuple[list[torch.nn.Linear], list[str]]:
    """The Linear layers and the activation between each consecutive pair (``identity`` if none)."""
    import torch
    if not isinstance(model, torch.nn.Sequential):
        raise InvalidArgument("model", f"expected a torch.nn.Sequential, got {type(model).__name__}")
    linears: list[torch.nn.Linear] = []
    acts: list[str] = []
    pending: str | None = None
    for k, module in enumerate(model):
        if isinstance(module, torch.nn.Linear):
            if linears:
                acts.append(pending or "identity")
            elif pending is not None:
                raise Unsupported("model", f"layer {k}: an activation before the first Linear layer")
            linears.append(module)
            pending = None
        else:
            if pending is not None or not linears:
                raise Unsupported("model", f"layer {k}: two activations in a row, or one before any Linear")
            pending = _activation_name(module, f"layer {k}")
    if not linears or pending is not None:
        raise Unsupported("model", "the model must start and end with a Linear layer (a linear readout)")
    return linears, acts


def from_torch(models: torch.nn.Module | Sequence[torch.nn.Module], *, sigma_w: float | None = None,
               sigma_b: float | Sequence[float] | None = None,
               dtype: type = np.float64) -> tuple[Network, Ensemble]:
    r"""A symbrg network and its parameters from one ``nn.Sequential`` (or a list of models of one
    architecture, stacked as ensemble members): widths, activations and the trained W, b.

    ``sigma_w``/``sigma_b``: the prior scales (standard parameterization, W ~ N(0, σ_w²/n_in),
    b ~ N(0, σ_b²)), by default those of PyTorch's initialization (module docstring).
    """
    import torch
    members = [models] if isinstance(models, torch.nn.Module) else list(models)
    if not members:
        raise InvalidArgument("models", "needs at least one model")
    structure = [_layers(m) for m in members]
    widths = [lin.in_features for lin in structure[0][0]] + [structure[0][0][-1].out_features]
    for k, (linears, acts) in enumerate(structure):
        shape = [lin.in_features for lin in linears] + [linears[-1].out_features]
        if shape != widths or acts != structure[0][1]:
            raise ShapeMismatch("models", f"model {k} has widths {shape} and activations {acts}; "
                                          f"model 0 has {widths} and {structure[0][1]}")
    has_bias = {lin.bias is not None for linears, _ in structure for lin in linears}
    if len(has_bias) != 1:
        raise Unsupported("models", "every Linear layer must have a bias, or none")
    bias = has_bias.pop()
    fan_in = widths[:-1]
    sw = 1 / math.sqrt(3) if sigma_w is None else sigma_w
    sb = [1 / math.sqrt(3 * n) for n in fan_in] if sigma_b is None else sigma_b
    net = network(widths, structure[0][1], sigma_w=sw, sigma_b=sb if bias else 0.0,
                  parameterization="standard", bias=bias, dtype=dtype)

    with torch.no_grad():
        def stacked(attr: str, l: int) -> np.ndarray:
            return np.stack([getattr(linears[l], attr).detach().cpu().double().numpy()
                             for linears, _ in structure]).astype(dtype)
        weights = [stacked("weight", l) for l in range(len(fan_in))]
        biases = [stacked("bias", l) if bias else None for l in range(len(fan_in))]
    return net, Ensemble(weights, biases, [None] * len(fan_in), [None] * len(fan_in))


def to_torch(net: Network, ens: Ensemble, model: torch.nn.Module, member: int = 0) -> torch.nn.Module:
    """Write member ``member`` of ``ens`` (e.g. a coarse-grained ensemble) into ``model``'s Linear
    layers in place and return it; ``model`` must have the architecture of ``net``."""
    import torch
    linears, acts = _layers(model)
    if [lin.in_features for lin in linears] + [linears[-1].out_features] != list(net.widths):
        raise ShapeMismatch("model", f"has widths different from the network's {list(net.widths)}")
    if not 0 <= member < ens.members:
        raise InvalidArgument("member", f"must be in [0, {ens.members}), got {member}")
    with torch.no_grad():
        for l, lin in enumerate(linears):
            lin.weight.copy_(torch.as_tensor(ens.weights[l][member] * net.weight_scale(l)))
            if lin.bias is not None and ens.biases[l] is not None:
                lin.bias.copy_(torch.as_tensor(ens.biases[l][member] * net.bias_scale(l)))
    return model
