"""Benchmark: the paper preset's full shell-renormalization pipeline, stacked vs one network at a time.

Pipeline per member: init (all weights N(0,1)), 1000 epochs of per-sample SGD on the 2000 readout
weights (200 training points, lr 1e-6), diagonal Fisher on the Fisher set, 25 cutoffs of cumulative
resampling, test MSE at each.  Three implementations, timed in the same run:

* ``symbrg``: :func:`symbrg.ensembles.experiment.run_shell_experiment`, all members stacked (blocks of 25) and
  the readout SGD run as the exact dual epoch map of :mod:`symbrg.ensembles.training`;
* ``plain``: one network at a time in NumPy, written the plain way (frozen features computed once,
  then a Python loop over the 200 000 per-sample SGD steps on a 2000-vector, then the Fisher and
  the cutoff loop).  It is timed on a few members and extrapolated linearly to the ensemble
  (members are independent, so the cost is exactly linear); the extrapolation is printed as such;
* ``torch``: the authors' way (``nn.Sequential``, ``optim.SGD`` per sample) on CPU, when PyTorch is
  importable (it is never a dependency), also timed on few members and extrapolated.

BLAS threads are pinned to one (``OPENBLAS_NUM_THREADS=1`` etc. unless already set), so that all
three run on one core of a shared machine.  Run ``python benchmarks/bench_experiment.py`` (100
members) or ``--quick`` (20 members, 1 timed plain member).
"""
from __future__ import annotations

import argparse
import os
import time

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

from symbrg.ensembles.experiment import make_data, preset, run_shell_experiment  # noqa: E402


def plain_member(cfg, data, seed: int) -> np.ndarray:
    """One network, the plain way; returns its test MSE at Λ = 0 and at every cutoff."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((10, 2))
    w2 = rng.standard_normal((10, 10))
    w3 = rng.standard_normal((2000, 10))
    w = rng.standard_normal(2000)

    def features(x):
        return np.maximum(np.maximum((x @ w1.T) @ w2.T, 0) @ w3.T, 0)

    h, y = features(data["x_train"]), data["y_train"]
    lr = cfg.lr
    for _ in range(cfg.epochs):
        for t in range(h.shape[0]):
            err = h[t] @ w - y[t]
            w -= (2 * lr * err) * h[t]
    fisher = np.mean(features(data["x_fisher"]) ** 2, axis=0)
    h_test, y_test = features(data["x_test"]), data["y_test"]
    prior = rng.standard_normal(2000)
    out = [np.mean((h_test @ w - y_test) ** 2)]
    for lam in cfg.lambdas:
        out.append(np.mean((h_test @ np.where(fisher < lam, prior, w) - y_test) ** 2))
    return np.array(out)


def torch_member(cfg, data, seed: int) -> None:  # pragma: no cover - optional
    import torch
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    net = torch.nn.Sequential(torch.nn.Linear(2, 10, bias=False), torch.nn.Identity(),
                              torch.nn.Linear(10, 10, bias=False), torch.nn.ReLU(),
                              torch.nn.Linear(10, 2000, bias=False), torch.nn.ReLU(),
                              torch.nn.Linear(2000, 1, bias=False)).double()
    for p in net.parameters():
        torch.nn.init.normal_(p)
        p.requires_grad_(False)
    readout = net[-1].weight
    readout.requires_grad_(True)
    opt = torch.optim.SGD([readout], lr=cfg.lr)
    x = torch.tensor(data["x_train"])
    y = torch.tensor(data["y_train"])[:, None]
    loss_fn = torch.nn.MSELoss()
    for _ in range(cfg.epochs):
        for t in range(x.shape[0]):
            opt.zero_grad()
            loss_fn(net(x[t:t + 1]), y[t:t + 1]).backward()
            opt.step()
    with torch.no_grad():
        h = net[:-1](torch.tensor(data["x_fisher"]))
        fisher = (h ** 2).mean(0)
        h_test = net[:-1](torch.tensor(data["x_test"]))
        y_test = torch.tensor(data["y_test"])
        w = readout[0].clone()
        prior = torch.randn(2000, dtype=torch.float64)
        for lam in cfg.lambdas:
            ((h_test @ torch.where(fisher < lam, prior, w) - y_test) ** 2).mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="20 members, 1 timed plain member")
    ap.add_argument("--members", type=int, default=None)
    ap.add_argument("--plain-members", type=int, default=None, help="members timed for the plain loop")
    args = ap.parse_args()
    members = args.members or (20 if args.quick else 100)
    timed = args.plain_members or (1 if args.quick else 3)
    cfg = preset("paper", members=members, block=25)
    data = make_data(cfg)

    run_shell_experiment(preset("paper", members=2, block=2, epochs=1, drop_above=None),
                         progress=lambda s: None)   # warm-up: compile the activation once
    t0 = time.perf_counter()
    res = run_shell_experiment(cfg, progress=lambda s: None)
    ours = time.perf_counter() - t0
    print(f"symbrg (stacked, {members} members): {ours:8.2f} s   "
          f"[trained test MSE {res['mse_trained']:.4g}, Λ_C = {res['lambda_c']}]")

    t0 = time.perf_counter()
    for m in range(timed):
        plain_member(cfg, data, seed=m)
    per = (time.perf_counter() - t0) / timed
    plain = per * members
    print(f"plain NumPy loop: {per:8.2f} s per member, timed on {timed} member(s), "
          f"extrapolated to {members}: {plain:8.1f} s")
    print(f"speed-up symbrg vs plain one-at-a-time loop: {plain / ours:6.1f}x  (target >= 20x)")

    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch: not importable here; the PyTorch CPU comparison is skipped")
        return
    t0 = time.perf_counter()
    torch_member(cfg, data, seed=0)
    per_t = time.perf_counter() - t0
    print(f"torch CPU (authors' way): {per_t:8.2f} s per member, extrapolated to {members}: "
          f"{per_t * members:8.1f} s; speed-up symbrg vs torch: {per_t * members / ours:6.1f}x")


if __name__ == "__main__":
    main()
