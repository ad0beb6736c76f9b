r"""Finite-width fully connected networks, a whole ensemble at once, in NumPy.

Job: initialize, evaluate and differentiate an ensemble of :math:`M` independent networks held in
stacked arrays (leading axis = member), so that every operation is one batched array operation and
nothing loops over members or data points (only over layers).

Definition (layer :math:`l = 0, \dots, L`; :math:`h^{(-1)} = x`; :math:`n_l` = width of layer l):

.. math::
    z^{(l)}_i = s_w^{(l)} \sum_j W^{(l)}_{ij} h^{(l-1)}_j + s_b^{(l)} b^{(l)}_i,\qquad
    h^{(l)}_i = g^{(l)}_i\,\varphi_l\big(z^{(l)}_i;\ c^{(l)}_i\big),\qquad f(x) = z^{(L)},

with the parameterizations of neural-tangents:

* ``"ntk"``:      :math:`W, b \sim N(0, 1)`, :math:`s_w = \sigma_w/\sqrt{n_{l-1}}`, :math:`s_b = \sigma_b`;
* ``"standard"``: :math:`W \sim N(0, \sigma_w^2/n_{l-1})`, :math:`b \sim N(0, \sigma_b^2)`, :math:`s_w = s_b = 1`.

Both give the same prior over functions (the NNGP kernel of :func:`symbrg.mlp`), and differ in
their gradients (hence their NTK).  :math:`c^{(l)}_i` is a fixed per-neuron phase (drawn
:math:`U[-\pi,\pi]` for the cos-net activations, ``Activation.random_phase``) and
:math:`g^{(l)}_i` an optional fixed per-neuron gain (the generalized cos-net's
:math:`(|b_i|^2+m^2)^{-1/2}`); neither is trained.  The readout (layer L) is linear.

Parameters are flattened, per member, layer by layer as ``W^{(0)}`` (row-major, n_out x n_in),
``b^{(0)}``, ``W^{(1)}``, ...; ``which="readout"`` selects only the last layer's W and b.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from symbrg.core import checks
from symbrg.core.errors import InvalidArgument, ShapeMismatch
from symbrg.core.types import DTypeLike
from symbrg.gaussian.activations import Activation, activation

__all__ = ["Network", "Ensemble", "network", "PARAMETERIZATIONS"]

PARAMETERIZATIONS = ("ntk", "standard")
#: Bytes a block of inputs may use per temporary in :meth:`Network.features`.
BLOCK_BYTES = 1 << 23
_WHICH = ("all", "readout")


@dataclass
class Ensemble:
    """The parameters of M networks, stacked: ``weights[l]`` (M, n_l, n_{l-1}), ``biases[l]``
    (M, n_l) or None; fixed ``phases[l]`` / ``gains[l]`` (M, n_l) or None (not trained)."""
    weights: list
    biases: list
    phases: list = field(default_factory=list)
    gains: list = field(default_factory=list)

    @property
    def members(self) -> int:
        """The ensemble size M."""
        return int(self.weights[0].shape[0])

    def copy(self) -> "Ensemble":
        """A deep copy (arrays copied)."""
        cp = lambda xs: [None if a is None else a.copy() for a in xs]  # noqa: E731
        return Ensemble(cp(self.weights), cp(self.biases), cp(self.phases), cp(self.gains))

    def select(self, index: Any) -> "Ensemble":
        """The sub-ensemble ``index`` (a slice or index array over members)."""
        sl = lambda xs: [None if a is None else a[index] for a in xs]  # noqa: E731
        return Ensemble(sl(self.weights), sl(self.biases), sl(self.phases), sl(self.gains))

    def _trainable(self, which: str) -> list[tuple[int, str]]:
        layers = range(len(self.weights)) if which == "all" else [len(self.weights) - 1]
        out = []
        for l in layers:
            out.append((l, "w"))
            if self.biases[l] is not None:
                out.append((l, "b"))
        return out

    def flat(self, which: str = "all") -> np.ndarray:
        """The trainable parameters as an (M, n_params) array (order: see the module docstring)."""
        checks.choice("which", which, _WHICH)
        m = self.members
        parts = [(self.weights[l] if k == "w" else self.biases[l]).reshape(m, -1)
                 for l, k in self._trainable(which)]
        return np.concatenate(parts, axis=1)

    def with_flat(self, theta: np.ndarray, which: str = "all") -> "Ensemble":
        """A new ensemble whose trainable parameters are ``theta`` (M, n_params); others shared."""
        checks.choice("which", which, _WHICH)
        new = Ensemble(list(self.weights), list(self.biases), list(self.phases), list(self.gains))
        theta = np.asarray(theta)
        offset = 0
        for l, k in self._trainable(which):
            ref = self.weights[l] if k == "w" else self.biases[l]
            size = int(np.prod(ref.shape[1:]))
            block = theta[:, offset:offset + size].reshape(ref.shape).astype(ref.dtype, copy=False)
            (new.weights if k == "w" else new.biases)[l] = block
            offset += size
        checks.matching("theta", theta.shape[1], offset, "number of parameters")
        return new


@dataclass(frozen=True)
class Network:
    r"""A fully connected architecture (no parameters): widths ``(d_in, n_0, ..., n_{L-1}, d_out)``,
    one activation per hidden layer, per-layer :math:`\sigma_w, \sigma_b`; see the module docstring."""
    widths: tuple[int, ...]
    activations: tuple[Activation, ...]
    sigma_w: tuple[float, ...]
    sigma_b: tuple[float, ...]
    parameterization: str = "ntk"
    bias: bool = True
    dtype: Any = np.float64

    @property
    def depth(self) -> int:
        """Number of hidden layers L."""
        return len(self.widths) - 2

    # ------------------------------------------------------------------ scales and priors
    def weight_scale(self, l: int) -> float:
        """:math:`s_w^{(l)}`: multiplier of W in the forward pass."""
        if self.parameterization == "ntk":
            return self.sigma_w[l] / math.sqrt(self.widths[l])
        return 1.0

    def bias_scale(self, l: int) -> float:
        """:math:`s_b^{(l)}`: multiplier of b in the forward pass."""
        return self.sigma_b[l] if self.parameterization == "ntk" else 1.0

    def weight_std(self, l: int) -> float:
        """Prior (initialization) standard deviation of W^{(l)}."""
        if self.parameterization == "ntk":
            return 1.0
        return self.sigma_w[l] / math.sqrt(self.widths[l])

    def bias_std(self, l: int) -> float:
        """Prior (initialization) standard deviation of b^{(l)}."""
        return 1.0 if self.parameterization == "ntk" else self.sigma_b[l]

    def prior_std(self, which: str = "all") -> np.ndarray:
        """Prior standard deviation of each flattened trainable parameter, shape (n_params,)."""
        checks.choice("which", which, _WHICH)
        layers = range(self.depth + 1) if which == "all" else [self.depth]
        parts = []
        for l in layers:
            parts.append(np.full(self.widths[l + 1] * self.widths[l], self.weight_std(l)))
            if self.bias:
                parts.append(np.full(self.widths[l + 1], self.bias_std(l)))
        return np.concatenate(parts)

    def n_params(self, which: str = "all") -> int:
        """Number of trainable parameters per member."""
        return int(self.prior_std(which).size)

    # ------------------------------------------------------------------ initialization
    def init(self, members: int, seed: "int | np.random.Generator | None" = None) -> Ensemble:
        """Draw ``members`` networks from the prior (and cos-net phases from U[-pi, pi])."""
        m = checks.integer("members", members, minimum=1)
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        weights, biases, phases = [], [], []
        for l in range(self.depth + 1):
            n_in, n_out = self.widths[l], self.widths[l + 1]
            weights.append((self.weight_std(l) * rng.standard_normal((m, n_out, n_in))).astype(self.dtype))
            biases.append((self.bias_std(l) * rng.standard_normal((m, n_out))).astype(self.dtype)
                          if self.bias else None)
            random_phase = l < self.depth and self.activations[l].random_phase
            phases.append(rng.uniform(-np.pi, np.pi, (m, n_out)).astype(self.dtype)
                          if random_phase else None)
        return Ensemble(weights, biases, phases, [None] * (self.depth + 1))

    # ------------------------------------------------------------------ forward and backward
    def _inputs(self, x: Any) -> np.ndarray:
        x = checks.finite_array("x", x, ndim=(2, 3), dtype=self.dtype)
        checks.matching("x", x.shape[-1], self.widths[0], "input dimension")
        return x

    def _act(self, ens: Ensemble, l: int, z: np.ndarray, derivative: bool = False) -> np.ndarray:
        phase = None if not ens.phases or ens.phases[l] is None else ens.phases[l][:, None, :]
        act = self.activations[l]
        out = (act.derivative if derivative else act)(z, phase=phase).astype(self.dtype, copy=False)
        gain = None if not ens.gains else ens.gains[l]
        return out if gain is None else out * gain[:, None, :]

    def _layer(self, ens: Ensemble, l: int, h: np.ndarray) -> np.ndarray:
        w = ens.weights[l]
        z = np.matmul(h, np.swapaxes(w, -1, -2))
        sw = self.weight_scale(l)
        if sw != 1.0:
            z *= sw
        if ens.biases[l] is not None:
            z += self.bias_scale(l) * ens.biases[l][:, None, :]
        return z

    def forward(self, ens: Ensemble, x: Any, *, cache: bool = False):
        """Outputs f(x), shape (M, P, d_out), for inputs x of shape (P, d_in) (shared by all
        members) or (M, P, d_in).  With ``cache`` also return ``(zs, hs)`` for :meth:`backward`."""
        h = self._inputs(x)
        zs: list[np.ndarray] = []
        hs = [h]
        for l in range(self.depth + 1):
            z = self._layer(ens, l, h)
            if l == self.depth:
                return (z, (zs, hs)) if cache else z
            zs.append(z)
            h = self._act(ens, l, z)
            hs.append(h)
        raise AssertionError("unreachable")  # pragma: no cover

    def features(self, ens: Ensemble, x: Any) -> np.ndarray:
        r"""The last hidden layer :math:`h^{(L-1)}(x)`, shape (M, P, n_{L-1}): the readout's input.

        Evaluated in blocks of inputs whose temporaries stay below :data:`BLOCK_BYTES` (memory is
        reused instead of freshly mapped for every layer)."""
        h = self._inputs(x)
        m, p = ens.members, h.shape[-2]
        widest = max(self.widths[1:-1], default=1)
        step = max(1, BLOCK_BYTES // (np.dtype(self.dtype).itemsize * m * widest))
        if self.depth == 0 or step >= p:
            return self._hidden(ens, h)
        out = np.empty((m, p, self.widths[-2]), dtype=self.dtype)
        for s in range(0, p, step):
            out[:, s:s + step] = self._hidden(ens, h[..., s:s + step, :])
        return out

    def _hidden(self, ens: Ensemble, h: np.ndarray) -> np.ndarray:
        for l in range(self.depth):
            h = self._act(ens, l, self._layer(ens, l, h))
        if h.ndim == 2:
            h = np.broadcast_to(h, (ens.members,) + h.shape)
        return h

    def backward(self, ens: Ensemble, cached: tuple, grad_out: np.ndarray,
                 which: str = "all") -> np.ndarray:
        r"""Vector-Jacobian product :math:`\sum_{x,k} g_{xk}\,\partial f_k(x)/\partial\theta`, shape
        (M, n_params), for ``grad_out`` g of shape (M, P, d_out) (summed over the data points)."""
        zs, hs = cached
        g = grad_out
        grads: dict[tuple[int, str], np.ndarray] = {}
        last = 0 if which == "all" else self.depth
        for l in range(self.depth, last - 1, -1):
            h = hs[l]
            gw = np.matmul(np.swapaxes(g, -1, -2), h)  # (M, n_out, n_in), broadcast if h is 2-D
            grads[(l, "w")] = self.weight_scale(l) * gw
            if ens.biases[l] is not None:
                grads[(l, "b")] = self.bias_scale(l) * g.sum(axis=1)
            if l > last:
                g = self.weight_scale(l) * np.matmul(g, ens.weights[l]) * self._act(ens, l - 1, zs[l - 1], True)
        m = ens.members
        return np.concatenate([grads[key].reshape(m, -1) for key in ens._trainable(which)], axis=1)

    def jacobian(self, ens: Ensemble, x: Any, which: str = "all") -> np.ndarray:
        r"""Per-sample Jacobian :math:`J_{xkA} = \partial f_k(x)/\partial\theta_A`, shape
        (M, P, d_out, n_params).  ``which="readout"`` is the readout block (cheap: the features)."""
        checks.choice("which", which, _WHICH)
        out, (zs, hs) = self.forward(ens, x, cache=True)
        m, p, d_out = out.shape
        blocks: dict[tuple[int, str], np.ndarray] = {}
        eye = np.eye(d_out, dtype=self.dtype)
        g = np.broadcast_to(eye, (m, p, d_out, d_out))  # (M, P, k, n_L): seed e_k per output
        last = 0 if which == "all" else self.depth
        for l in range(self.depth, last - 1, -1):
            h = hs[l] if hs[l].ndim == 3 else np.broadcast_to(hs[l], (m,) + hs[l].shape)
            blocks[(l, "w")] = (self.weight_scale(l) * g[..., :, None] * h[:, :, None, None, :]
                                ).reshape(m, p, d_out, -1)
            if ens.biases[l] is not None:
                blocks[(l, "b")] = self.bias_scale(l) * g
            if l > last:
                g = (self.weight_scale(l) * np.matmul(g, ens.weights[l][:, None])
                     * self._act(ens, l - 1, zs[l - 1], True)[:, :, None, :])
        return np.concatenate([np.broadcast_to(blocks[key], (m, p, d_out, blocks[key].shape[-1]))
                               for key in ens._trainable(which)], axis=-1)


def _per_layer(name: str, value: Any, count: int, check) -> tuple[float, ...]:
    values = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value] * count
    if len(values) != count:
        raise ShapeMismatch(name, f"needs one value per layer ({count}), got {len(values)}")
    return tuple(float(check(name, v)) for v in values)


def network(widths: Sequence[int], activation_: "str | Activation | Sequence" = "relu", *,
            sigma_w: "float | Sequence[float]" = 1.0, sigma_b: "float | Sequence[float]" = 0.0,
            parameterization: str = "ntk", bias: bool = True, dtype: DTypeLike = "float64") -> Network:
    r"""Build a :class:`Network` with widths ``(d_in, n_0, ..., n_{L-1}, d_out)``.

    ``activation_`` is one activation spec for every hidden layer, or one per hidden layer.
    ``sigma_w``/``sigma_b`` are scalars or one value per layer (L+1 values, readout last).
    Example (the paper's net, all weights N(0,1)): ``network((2, 10, 10, 2000, 1),
    ["identity", "relu", "relu"], sigma_w=[2**.5, 10**.5, 10**.5, 2000**.5],
    parameterization="standard", bias=False)``.
    """
    ws = [checks.integer("width", w, minimum=1) for w in widths]
    if len(ws) < 2:
        raise InvalidArgument("widths", "needs at least (d_in, d_out)")
    depth = len(ws) - 2
    if isinstance(activation_, (list, tuple)):
        acts = tuple(activation(a) for a in activation_)
        if len(acts) != depth:
            raise ShapeMismatch("activation", f"needs one activation per hidden layer ({depth}), "
                                              f"got {len(acts)}")
    else:
        acts = (activation(activation_),) * depth
    checks.choice("parameterization", parameterization, PARAMETERIZATIONS)
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise InvalidArgument("dtype", f"must be float64 or float32, got {dt}")
    return Network(tuple(ws), acts, _per_layer("sigma_w", sigma_w, depth + 1, checks.positive),
                   _per_layer("sigma_b", sigma_b, depth + 1, checks.nonnegative),
                   parameterization, bool(bias), dt.type)
