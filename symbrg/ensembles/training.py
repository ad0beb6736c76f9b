r"""Training a whole ensemble at once: gradient descent, mini-batch / per-sample SGD, Adam.

Job: minimize, for every member m of a stacked :class:`symbrg.ensembles.networks.Ensemble` simultaneously,

.. math::  \mathcal L_m(\theta) = \frac{1}{|B|\,d_{\rm out}}\sum_{x\in B}\sum_{k}\big(f_{m,k}(x;\theta)-y_k(x)\big)^2

(the mean squared error of ``torch.nn.MSELoss``; gradient :math:`\tfrac{2}{|B|d_{\rm out}}\sum (f-y)\,\partial f`)
over batches B: the full set (``batch_size=None``: gradient descent), mini-batches, or single
samples (``batch_size=1``), visited in a fixed order or, with ``shuffle``, in a seeded permutation
per epoch shared by all members.  Update rules: SGD :math:`\theta \leftarrow \theta - \eta\nabla\mathcal L`;
Adam (Kingma & Ba 2015, bias-corrected moments).  Loops run over epochs and steps only.

Readout-only training (hidden layers frozen) is a linear model :math:`f = \Phi\theta` on the
features :math:`\Phi` (the last hidden layer, times the readout scale, plus a bias column).  For
SGD its iterates stay in :math:`\theta_0 + \mathrm{span}\,\Phi^\top`:
:math:`\theta_t = \theta_0 + \Phi^\top a_t`, and the update becomes
:math:`a_B \leftarrow a_B - \tfrac{2\eta}{|B|d_{\rm out}}\,(f_0 + G a - y)_B` with
:math:`G = \Phi\Phi^\top`: the same iterates (in exact arithmetic) at :math:`O(P)` instead of
:math:`O(n)` per sample.  It is used whenever there are fewer data points than features.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from symbrg.core import checks
from symbrg.core.types import ArrayLike
from symbrg.ensembles.networks import Ensemble, Network

__all__ = ["train", "Training", "OPTIMIZERS", "mse"]

OPTIMIZERS = ("sgd", "adam")


@dataclass
class Training:
    """The trained ensemble and its training loss: ``loss[r, m]`` at ``epochs_recorded[r]``."""
    ensemble: Ensemble
    loss: np.ndarray
    epochs_recorded: np.ndarray


def mse(pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-member mean squared error, :math:`\\frac{1}{P d}\\sum_{x,k}(f_k(x) - y_k(x))^2`, shape (M,)."""
    return np.mean((pred - y) ** 2, axis=(-2, -1))


class _SGD:
    """Plain (stochastic) gradient descent on a stacked parameter array, in place."""

    def __init__(self, lr):
        self.lr = lr

    def step(self, theta: np.ndarray, grad: np.ndarray) -> None:
        theta -= self.lr * grad


def _optimizer(optimizer, theta, lr, betas, eps):
    return _Adam(theta.shape, theta.dtype, lr, betas, eps) if optimizer == "adam" else _SGD(lr)


class _Adam:
    """Bias-corrected Adam on a stacked parameter array."""

    def __init__(self, shape, dtype, lr, betas, eps):
        self.lr, (self.b1, self.b2), self.eps = lr, betas, eps
        self.m = np.zeros(shape, dtype)
        self.v = np.zeros(shape, dtype)
        self.t = 0

    def step(self, theta: np.ndarray, grad: np.ndarray) -> None:
        self.t += 1
        self.m *= self.b1
        self.m += (1 - self.b1) * grad
        self.v *= self.b2
        self.v += (1 - self.b2) * grad * grad
        mhat = self.m / (1 - self.b1 ** self.t)
        vhat = self.v / (1 - self.b2 ** self.t)
        theta -= self.lr * mhat / (np.sqrt(vhat) + self.eps)


def _batches(p: int, batch_size: int | None, shuffle: bool, rng: np.random.Generator):
    order = rng.permutation(p) if shuffle else np.arange(p)
    b = p if batch_size is None else batch_size
    if b == 1:
        return [int(i) for i in order]
    return [order[i:i + b] for i in range(0, p, b)]


def train(net: Network, ens: Ensemble, x: ArrayLike, y: ArrayLike, *, lr: float, epochs: int,
          optimizer: str = "sgd", batch_size: int | None = None, readout_only: bool = False,
          shuffle: bool = False, seed: "int | np.random.Generator | None" = None,
          betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
          record_every: int | None = None,
          progress: Callable[[int, int], None] | None = None) -> Training:
    r"""Train every member of ``ens`` on the data (x, y) (see the module docstring for the loss).

    x: (P, d_in) inputs shared by all members, or (M, P, d_in) one data set per member; y: (P,) or
    (P, d_out) targets, or (M, P) / (M, P, d_out) with per-member inputs.  ``record_every`` epochs the
    training loss of every member is recorded (default: about 100 records); ``progress(epoch,
    epochs)`` is called after each epoch.  Returns a :class:`Training` (the input is not modified).
    """
    x = checks.finite_array("x", x, ndim=(2, 3), dtype=net.dtype)
    y = checks.finite_array("y", y, ndim=(x.ndim - 1, x.ndim), dtype=net.dtype)
    y = y[..., None] if y.ndim == x.ndim - 1 else y
    if x.ndim == 3:
        checks.matching("x", x.shape[0], ens.members, "number of per-member data sets")
        checks.matching("y", y.shape[0], x.shape[0], "number of per-member data sets")
    checks.matching("y", y.shape[-2], x.shape[-2], "number of targets")
    checks.matching("y", y.shape[-1], net.widths[-1], "output dimension")
    lr = checks.positive("lr", lr)
    epochs = checks.integer("epochs", epochs, minimum=0)
    checks.choice("optimizer", optimizer, OPTIMIZERS)
    if batch_size is not None:
        batch_size = checks.integer("batch_size", batch_size, minimum=1)
    record_every = (max(1, epochs // 100) if record_every is None
                    else checks.integer("record_every", record_every, minimum=1))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    kw = dict(lr=lr, epochs=epochs, optimizer=optimizer, batch_size=batch_size, shuffle=shuffle,
              rng=rng, betas=betas, eps=eps, record_every=record_every, progress=progress)
    if readout_only:
        return _train_readout(net, ens, x, y, **kw)
    return _train_all(net, ens, x, y, **kw)


def _train_all(net, ens, x, y, *, lr, epochs, optimizer, batch_size, shuffle, rng, betas, eps,
               record_every, progress) -> Training:
    theta = ens.flat("all").copy()
    opt = _optimizer(optimizer, theta, lr, betas, eps)
    records, when = [], []

    def record(epoch):
        records.append(mse(net.forward(ens.with_flat(theta), x), y))
        when.append(epoch)

    record(0)
    for epoch in range(1, epochs + 1):
        for batch in _batches(x.shape[-2], batch_size, shuffle, rng):
            rows = slice(batch, batch + 1) if isinstance(batch, int) else batch
            xb, yb = x[..., rows, :], y[..., rows, :]
            current = ens.with_flat(theta)
            out, cache = net.forward(current, xb, cache=True)
            grad = net.backward(current, cache, (2.0 / (yb.shape[-2] * yb.shape[-1])) * (out - yb))
            opt.step(theta, grad)
        if epoch % record_every == 0 or epoch == epochs:
            record(epoch)
        if progress:
            progress(epoch, epochs)
    return Training(ens.with_flat(theta), np.array(records), np.array(when))


def readout_design(net: Network, ens: Ensemble, x: np.ndarray) -> np.ndarray:
    r"""The readout's design matrix :math:`\Phi = [s_w h^{(L-1)}(x),\ s_b]`, shape (M, P, n_readout_in)
    such that :math:`f(x) = \Phi\,[W^{(L)}, b^{(L)}]^\top`."""
    l = net.depth
    phi = net.features(ens, x)
    if net.weight_scale(l) != 1.0:
        phi = net.weight_scale(l) * phi
    if ens.biases[l] is not None:
        col = np.full(phi.shape[:2] + (1,), net.bias_scale(l), dtype=phi.dtype)
        phi = np.concatenate([phi, col], axis=-1)
    return np.ascontiguousarray(phi)


def _theta_readout(ens: Ensemble) -> np.ndarray:
    """Readout parameters as (M, n_in[+1], d_out) so that f = Phi @ theta."""
    l = len(ens.weights) - 1
    parts = [np.swapaxes(ens.weights[l], 1, 2)]
    if ens.biases[l] is not None:
        parts.append(ens.biases[l][:, None, :])
    return np.concatenate(parts, axis=1)


def _with_theta_readout(ens: Ensemble, theta: np.ndarray) -> Ensemble:
    l = len(ens.weights) - 1
    new = Ensemble(list(ens.weights), list(ens.biases), list(ens.phases), list(ens.gains))
    n_in = ens.weights[l].shape[2]
    new.weights[l] = np.ascontiguousarray(np.swapaxes(theta[:, :n_in, :], 1, 2))
    if ens.biases[l] is not None:
        new.biases[l] = np.ascontiguousarray(theta[:, n_in, :])
    return new


def _train_readout(net, ens, x, y, *, lr, epochs, optimizer, batch_size, shuffle, rng, betas, eps,
                   record_every, progress) -> Training:
    phi = readout_design(net, ens, x)              # (M, P, n)
    theta0 = _theta_readout(ens)                   # (M, n, d)
    p, n = phi.shape[1], phi.shape[2]
    d_out = y.shape[-1]
    dual = optimizer == "sgd" and p < n
    records, when = [], []
    if dual:
        gram = np.matmul(phi, np.swapaxes(phi, 1, 2))          # (M, P, P)
        f0 = np.matmul(phi, theta0)                            # (M, P, d)
        a = np.zeros(f0.shape, dtype=f0.dtype)                 # theta = theta0 + Phi^T a

        def predict():
            return f0 + np.matmul(gram, a)
    else:
        theta = theta0.copy()
        opt = _optimizer(optimizer, theta, lr, betas, eps)

        def predict():
            return np.matmul(phi, theta)

    def record(epoch):
        records.append(mse(predict(), y))
        when.append(epoch)

    record(0)
    if dual and not shuffle:   # fixed order: one epoch is one affine map of the dual variables
        def record_dual(e: int, a_: np.ndarray) -> None:
            records.append(mse(f0 + np.matmul(gram, a_), y))
            when.append(e)

        a = _sweeps(gram, f0 - y, a, lr, d_out, batch_size, epochs, record_every, record_dual, progress)
        epochs = 0
    for epoch in range(1, epochs + 1):
        for b in _batches(p, batch_size, shuffle, rng):
            b = [b] if isinstance(b, int) else b
            if dual:           # O(M P |B|) per step
                r = np.matmul(gram[:, b], a) + f0[:, b] - y[..., b, :]
                a[:, b] -= (2.0 * lr / (len(b) * d_out)) * r
                continue
            pb = phi[:, b]
            resid = np.matmul(pb, theta) - y[..., b, :]
            grad = (2.0 / (len(b) * d_out)) * np.matmul(np.swapaxes(pb, 1, 2), resid)
            opt.step(theta, grad)
        if epoch % record_every == 0 or epoch == epochs:
            record(epoch)
        if progress:
            progress(epoch, epochs)
    if dual:
        theta = theta0 + np.matmul(np.swapaxes(phi, 1, 2), a)
    return Training(_with_theta_readout(ens, theta), np.array(records), np.array(when))



def _compose_power(tmat: np.ndarray, u: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    r"""k-fold composition of the affine map :math:`a \mapsto T a + u` (stacked over members):
    returns :math:`(T^k, \sum_{j<k} T^j u)` by binary powering, :math:`O(\log k)` matmuls."""
    eye = np.broadcast_to(np.eye(tmat.shape[-1], dtype=tmat.dtype), tmat.shape)
    power, shift = eye.copy(), np.zeros_like(u)
    base, vec = tmat, u
    while k:
        if k & 1:
            power, shift = np.matmul(base, power), np.matmul(base, shift) + vec
        k >>= 1
        if k:
            base, vec = np.matmul(base, base), np.matmul(base, vec) + vec
    return power, shift


def _sweeps(gram, offset, a, lr, d_out, batch_size, epochs, record_every, record, progress):
    r"""Run ``epochs`` fixed-order SGD epochs in the dual variables, one epoch as one affine map.

    Within an epoch the batches are visited in order, so the update of batch j sees the updates of
    the earlier batches: with :math:`c_s = 2\eta/(|B_s| d_{\rm out})` and :math:`L` the part of G
    coupling a sample to samples of *earlier* batches (strictly lower block-triangular),
    :math:`\delta = -(D_c^{-1} + L)^{-1}(f_0 - y + G a)` (block Gauss-Seidel; per-sample SGD is the
    Kaczmarz sweep, full-batch GD has L = 0), so :math:`a \mapsto T a + u` with
    :math:`T = 1 - (D_c^{-1}+L)^{-1}G`, :math:`u = -(D_c^{-1}+L)^{-1}(f_0 - y)`.
    """
    m, p, _ = gram.shape
    b = p if batch_size is None else batch_size
    batch = np.arange(p) // b
    size = np.minimum(b, p - batch * b)                     # last batch may be short
    lower = batch[None, :] < batch[:, None]
    system = np.where(lower, gram, 0.0)
    system[:, np.arange(p), np.arange(p)] += size * d_out / (2.0 * lr)
    offset = np.broadcast_to(offset, (m,) + offset.shape[1:])
    sol = np.linalg.solve(system, np.concatenate([gram, offset], axis=2))
    tmat = -sol[..., :p]
    tmat[:, np.arange(p), np.arange(p)] += 1.0
    u = -sol[..., p:]
    done, maps = 0, {}
    while done < epochs:
        k = min(record_every - done % record_every, epochs - done)
        if k not in maps:
            maps[k] = _compose_power(tmat, u, k)
        power, shift = maps[k]
        a = np.matmul(power, a) + shift
        done += k
        record(done, a)
        if progress:
            progress(done, epochs)
    return a
