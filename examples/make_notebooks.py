"""Write the example notebooks (``examples/*.ipynb``) from the cell sources below, outputs cleared.

The notebooks are generated, not edited by hand: change a cell here and run

    python examples/make_notebooks.py

`pytest` executes every notebook (nbmake, see ``[tool.pytest.ini_options]`` in pyproject.toml) and the
documentation renders them unexecuted (``docs/``).  Each must stay small: well under 30 s on 2 cores.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent
KERNEL = {"display_name": "Python 3", "language": "python", "name": "python3"}


def md(text: str) -> nbformat.NotebookNode:
    return new_markdown_cell(text.strip("\n"))


def code(text: str) -> nbformat.NotebookNode:
    return new_code_cell(text.strip("\n"))


# ---------------------------------------------------------------------------------------------- 01
KERNEL_NB = [
    md(r"""
# 1. A kernel and its derivation

symbrg derives the infinite-width kernels of a network *symbolically*, layer by layer, and compiles
them to NumPy (and to mpmath at any precision).  This notebook

1. builds a depth-3 ReLU network and prints its NNGP **kernel program** (one assignment per line);
2. shows the **derivation** as Markdown and LaTeX;
3. computes **Gram matrices** (NNGP and NTK, float64 and 50-digit mpmath);
4. uses the **compiled program** directly, and its derivative with respect to $\sigma_w$;
5. checks the kernel against a **Monte-Carlo ensemble** of finite-width networks.

Conventions (neural-tangents): $K^{(0)}(x,x') = \sigma_b^2 + \sigma_w^2\,x\cdot x'/d$,
$K^{(l+1)} = \sigma_b^2 + \sigma_w^2\,\mathbb E[\varphi(u)\varphi(v)]$, $(u,v)\sim\mathcal N(0, K^{(l)})$;
the NTK uses the NTK parameterization.
"""),
    code(r"""
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

import symbrg

t_start = time.perf_counter()
arch = symbrg.mlp("relu", depth=3, sigma_w=1.4, sigma_b=0.1)   # NTK parameterization (default)
print(arch.nngp_program.to_text())
"""),
    md(r"""
## The derivation

`arch.derivation("nngp")` is a `Derivation`: every step is a SymPy statement with its justification,
citations and the record of how it was checked.  It prints as Markdown, LaTeX or text.
"""),
    code(r"""
d = arch.derivation("nngp")
display(Markdown(d.to_markdown()))
"""),
    code(r"""
latex = d.to_latex(standalone=False)      # standalone=True gives a complete document for pdflatex
print("\n".join(latex.splitlines()[:12]), "\n...")
"""),
    md(r"""
## Gram matrices

`arch.nngp(X)` and `arch.ntk(X)` return float64 Gram matrices (tiled, in place, on all cores);
`precision=` switches to mpmath with that many digits.  Below: the kernels between a fixed input and
inputs at angle $\theta$ on the same sphere, for depths 1, 3 and 6.
"""),
    code(r"""
theta = np.linspace(0, np.pi, 181)
sphere = np.sqrt(2) * np.c_[np.cos(theta), np.sin(theta)]      # |x|^2/d = 1 in d = 2
fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharex=True)
for depth in (1, 3, 6):
    net = symbrg.mlp("relu", depth=depth, sigma_w=1.4, sigma_b=0.1)
    axes[0].plot(theta, net.nngp(sphere[:1], sphere)[0], label=f"depth {depth}")
    axes[1].plot(theta, net.ntk(sphere[:1], sphere)[0], label=f"depth {depth}")
for ax, name in zip(axes, ("NNGP $K(x_0, x_\\theta)$", "NTK $\\Theta(x_0, x_\\theta)$")):
    ax.set_xlabel(r"angle $\theta$ between the inputs")
    ax.set_title(name)
    ax.legend()
fig.tight_layout()
"""),
    code(r"""
X = np.random.default_rng(0).normal(size=(300, 5))
K = arch.nngp(X)
T = arch.ntk(X)
print("NNGP", K.shape, "smallest eigenvalue", np.linalg.eigvalsh(K).min())
print("NTK ", T.shape, "symmetric:", np.array_equal(T, T.T))
print(arch.ntk(X[:2], precision=50))      # mpmath, 50 digits
"""),
    md(r"""
## The compiled program

The kernel program is a DAG of assignments; `compile("numpy")` turns it into a vectorized function of
$s_{11} = |x|^2/d$, $s_{22} = |x'|^2/d$, $s_{12} = x\cdot x'/d$ and the hyperparameters, and `diff`
differentiates the whole program (forward mode, still linear in depth).
"""),
    code(r"""
prog = arch.nngp_program
print("inputs:", prog.inputs)
print(prog.source()[:500], "...")
fn = prog.compile("numpy")
s = X @ X.T / X.shape[1]
diag = np.diag(s)
K_direct = fn(diag[:, None], diag[None, :], s, 0.1, 1.4)
print("compiled program == arch.nngp:", np.allclose(K_direct, K, rtol=1e-12, atol=1e-12))
"""),
    code(r"""
sigma_w = next(v for v in arch.values if v.name == "sigma_w")
dK = prog.diff(sigma_w).compile("numpy")
h = 1e-6
fd = (fn(diag[:, None], diag[None, :], s, 0.1, 1.4 + h) - fn(diag[:, None], diag[None, :], s, 0.1, 1.4 - h)) / (2 * h)
print("dK/dsigma_w against a central difference: max |diff| =",
      np.abs(dK(diag[:, None], diag[None, :], s, 0.1, 1.4) - fd).max())
"""),
    md(r"""
## A Monte-Carlo check

400 random networks of width 64 with the same architecture: the sample mean of $f(x_i)f(x_j)$ must
agree with $K(x_i, x_j)$ within a few standard errors (estimated from the sample).
"""),
    code(r"""
from symbrg.ensembles.ensemble import nngp_comparison
from symbrg.ensembles.networks import network

net = network((5, 64, 64, 64, 1), "relu", sigma_w=1.4, sigma_b=0.1, parameterization="ntk")
x = np.random.default_rng(1).standard_normal((6, 5))
c = nngp_comparison(net, x, 400, seed=0, block=200)
print(f"largest deviation: {c.max_z:.2f} standard errors; within 5: {c.agrees(5.0)}")
iu = np.triu_indices(6)
fig, ax = plt.subplots(figsize=(4.2, 4))
ax.errorbar(c.predicted[iu], c.empirical[iu], yerr=2 * c.stderr[iu], fmt="o", ms=4, capsize=2,
            label="ensemble mean, ±2 s.e.")
lim = [0, 1.05 * c.predicted.max()]
ax.plot(lim, lim, "k--", lw=1, label="exact NNGP")
ax.set_xlabel("NNGP $K(x_i, x_j)$")
ax.set_ylabel(r"$\langle f(x_i) f(x_j)\rangle$, 400 networks")
ax.legend()
print(f"notebook ran in {time.perf_counter() - t_start:.1f} s")
"""),
    md(r"""
Next: `02_brg_flow.ipynb` coarse-grains the posterior of such a kernel, and `03_cosnet_theorem.ipynb`
proves that for the cos-net this coarse graining is the exact RG of a free scalar.
"""),
]

# ---------------------------------------------------------------------------------------------- 02
BRG_NB = [
    md(r"""
# 2. The Bayesian RG flow of an NNGP posterior

Bayesian RG coarse-grains a posterior against the Fisher information: directions the data
distinguish less than the cutoff $\Lambda$ (Fisher eigenvalue $\lambda < \Lambda$, *sloppy*) are sent
back to the prior, the *stiff* ones are kept (Howard, Klinger, Maiti, Stapleton, arXiv:2405.17538).

For the infinite-width network the readout Fisher has the eigenvectors $e_k$ of $K(X,X)$ with
eigenvalues $\kappa_k/\sigma^2$, and with $\psi_k(x) = K(x,X)e_k/\kappa_k$ and a shell weight $w_k$
($\Theta(\lambda_k - \Lambda)$ for the sharp shell, a regulator's cutoff function for a smooth one):

$$
m_\Lambda(x) = \sum_k \psi_k(x)\,\frac{w_k\kappa_k y_k}{\sigma^2 + w_k\kappa_k},\qquad
\Sigma_\Lambda(x,x') = K(x,x') - \sum_k \psi_k(x)\psi_k(x')\,\frac{w_k\kappa_k^2}{\sigma^2+w_k\kappa_k}.
$$

This notebook follows that flow (UV → IR) for a small regression problem, and the training flow
(IR → UV) in the number of observations.
"""),
    code(r"""
import time

import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Markdown, display

import symbrg
from symbrg.rg.brg import nngp_flow, predictive_flow, weights

t_start = time.perf_counter()
rng = np.random.default_rng(0)
x = np.sort(rng.uniform(-3, 3, 20))[:, None]
y = np.sin(2 * x[:, 0]) + 0.1 * rng.normal(size=20)
z = np.linspace(-4, 4, 101)[:, None]
y_true = np.sin(2 * z[:, 0])
inside = np.abs(z[:, 0]) <= 3                            # the test MSE is measured where there are data
noise = 0.01
arch = symbrg.mlp("erf", depth=2, sigma_w=1.5, sigma_b=0.05)
full = nngp_flow(arch, x, y, noise, 0.0, z=z)            # Lambda = 0: the GP posterior
fisher = full.fisher_eigenvalues
print("readout Fisher eigenvalues kappa_k / sigma^2:", np.array2string(fisher, precision=2))

# nngp_flow computes the Gram matrices on every call; for many cutoffs compute them once:
grams = dict(k_zx=arch.nngp(z, x), k_zz=arch.nngp(z))
k_xx = arch.nngp(x)


def flow_at(cutoff, **options):
    # the coarse-grained predictive process on z: the same as nngp_flow(arch, x, y, noise, cutoff, z=z)
    return predictive_flow(k_xx, y, noise, cutoff, **grams, **options)
"""),
    md(r"""
## The Fisher spectrum and the cutoffs

Each cutoff $\Lambda$ keeps the modes to its right.
"""),
    code(r"""
cutoffs = [0.0, 1.0, 30.0, 1e3]
fig, ax = plt.subplots(figsize=(6.4, 2.6))
ax.semilogx(fisher, np.zeros_like(fisher), "|", ms=30, mew=2, color="C0")
for c, color in zip(cutoffs[1:], ("C1", "C2", "C3")):
    ax.axvline(c, color=color, lw=2, label=rf"$\Lambda = {c:g}$: {np.sum(fisher >= c)} stiff modes")
ax.set_yticks([])
ax.set_xlabel(r"Fisher eigenvalue $\lambda_k = \kappa_k/\sigma^2$")
ax.legend(fontsize=8, loc="upper left")
fig.tight_layout()
"""),
    md(r"""
## The predictive process along the flow (sharp shell, prior prescription)

As $\Lambda$ grows the stiff modes are given up one by one: the mean loses its detail and the
variance returns to the prior's.
"""),
    code(r"""
fig, axes = plt.subplots(1, len(cutoffs), figsize=(12, 3), sharey=True)
for ax, c in zip(axes, cutoffs):
    flow = flow_at(c)
    sd = np.sqrt(np.clip(np.diag(flow.covariance), 0, None))
    ax.fill_between(z[:, 0], flow.mean - 2 * sd, flow.mean + 2 * sd, color="C0", alpha=0.25, lw=0,
                    label=r"$m_\Lambda \pm 2\sqrt{\Sigma_\Lambda}$")
    ax.plot(z[:, 0], flow.mean, color="C0")
    ax.plot(z[:, 0], y_true, "k--", lw=0.8, label="target")
    ax.plot(x[:, 0], y, "k.", ms=5, label="data")
    ax.set_title(rf"$\Lambda = {c:g}$: {int(np.sum(flow.weights > 0))} stiff modes", fontsize=9)
    ax.set_xlabel("$x$")
axes[0].legend(fontsize=7, loc="lower left")
axes[0].set_ylim(-3, 3)
fig.tight_layout()
"""),
    md(r"""
## Smooth shells: one regulator for the ERG and the BRG

A regulator replaces the step $\Theta(\lambda - \Lambda)$ by its UV cutoff function
$w = K(\Lambda/\lambda)$, the same object the exact-RG engine uses.
"""),
    code(r"""
lam = np.geomspace(1e-2, 1e2, 400)
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for reg in ("sharp", "litim", "exponential", "power:4"):
    ax.semilogx(lam, weights(lam, 1.0, reg), label=reg)
ax.axvline(1.0, color="0.5", ls=":", lw=1)
ax.set_xlabel(r"Fisher eigenvalue $\lambda$ (cutoff $\Lambda = 1$)")
ax.set_ylabel("shell weight $w$")
ax.legend(fontsize=8)
fig.tight_layout()
"""),
    code(r"""
grid = np.geomspace(1e-3, 1e5, 25)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.4))
for reg, color in (("sharp", "C0"), ("power:4", "C1")):
    flows = [flow_at(c, regulator=reg) for c in grid]
    ax1.loglog(grid, [np.mean((f.mean - y_true)[inside] ** 2) for f in flows], "o-", ms=3, color=color,
               label=reg)
    ax2.loglog(grid, [np.mean(np.diag(f.covariance)) for f in flows], "o-", ms=3, color=color, label=reg)
for ax, label in ((ax1, "test MSE of $m_\\Lambda$ on $|x| \\leq 3$"), (ax2, "mean predictive variance")):
    ax.set_xlabel(r"Fisher cutoff $\Lambda$")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3, which="both", lw=0.5)
    ax.legend()
fig.tight_layout()
"""),
    md(r"""
## Prescriptions

The *prior* prescription redraws the sloppy directions from the prior (what numerical experiments
do); the *Jeffreys* prescription gives them the (flat, improper) Jeffreys prior, so the coarse-grained
process has flat directions.
"""),
    code(r"""
for prescription in ("prior", "jeffreys"):
    flow = flow_at(30.0, prescription=prescription)
    print(f"{prescription:>8}: proper = {flow.proper}, flat directions on the 101 prediction points: "
          f"{flow.flat.shape[1]}")
flow = flow_at(30.0)
print("induced action S_Lambda at the mean (its minimum):", flow.action(flow.mean).round(2))
"""),
    md(r"""
## The training flow (IR → UV)

Training is the opposite flow: $T$ replicas of the data multiply the likelihood precision, the
Fisher eigenvalues become $T\kappa_k/\sigma^2$, and on the data the posterior variance of each mode
tends to the pushed-forward $\sigma^2/T$.
"""),
    code(r"""
Ts = np.geomspace(0.1, 1e4, 30)
mode_var = np.array([predictive_flow(k_xx, y, noise, 0.0, observations=t).mode_variance[:3] for t in Ts])
fig, ax = plt.subplots(figsize=(5.5, 3.2))
for k in range(3):
    ax.loglog(Ts, mode_var[:, k], label=f"mode {k}")
ax.loglog(Ts, noise / Ts, "k--", lw=1, label=r"$\sigma^2/T$")
ax.set_xlabel("observations $T$")
ax.set_ylabel("posterior variance of the mode")
ax.legend(fontsize=8)
fig.tight_layout()
"""),
    md(r"""
## The derivation

Every formula used above is derived and checked symbolically in `nngp_brg_derivation`.
"""),
    code(r"""
from symbrg.rg.brg import nngp_brg_derivation

d = nngp_brg_derivation()
print(d.title, "-", len(d.steps), "steps, verified:", d.verified)
display(Markdown("\n".join(d.to_markdown().splitlines()[:40]) + "\n\n*...*"))
print(f"notebook ran in {time.perf_counter() - t_start:.1f} s")
"""),
]

# ---------------------------------------------------------------------------------------------- 03
COSNET_NB = [
    md(r"""
# 3. The cos-net theorem: BRG coarse graining *is* the exact RG of a free scalar

The generalized cos-net $f(x) = \beta + N^{-1/2}\sum_i a_i\,s(|b_i|)\cos(b_i\cdot x + c_i)$, with
frequencies $b_i$ uniform in the ball $|b| < R$, $s(p) = (p^2+m^2)^{-1/2}$ and uniform phases, is at
infinite width a free scalar field with propagator $G(p) = 1/(p^2+m^2)$ cut off at $R$.  Its readout
Fisher is $I(p) = c/(p^2+m^2)$, $c = T/(2N\sigma_\epsilon^2)$, so an information cutoff $\Lambda$ is a
momentum cutoff

$$ k(\Lambda)^2 = \frac{c}{\Lambda} - m^2 , $$

and symbrg proves, with a *falsifiable certificate*, that the stiff sector is the Polchinski flow of
the free scalar along $k(\Lambda)$.  This notebook runs the certificate and its mutations, then
samples finite-width cos-nets and compares them with the analytic kernels.
"""),
    code(r"""
import time

import matplotlib.pyplot as plt
import numpy as np

from symbrg.cosnet.certificate import MUTATIONS, certify, k_of_lambda
from symbrg.cosnet.theory import generalized_cosnet, sample_cosnet

t_start = time.perf_counter()
net = generalized_cosnet(1, 4, 1)            # d = 1, R = 4, m = 1
print("dual action:", net.dual_action())
print("readout Fisher I(p) =", net.fisher_readout())
print("cutoff map k(Lambda) =", k_of_lambda())
"""),
    md(r"""
## The certificate

`certify(dim, regulator)` builds the two sides independently (the BRG side from the likelihood and
the BRG engine's shells, the ERG side from the free scalar and the ERG engine's regulators) and checks
every identity between them symbolically and at random points with 30 digits.
"""),
    code(r"""
cert = certify(1, "sharp", points=2)
print(f"{'identity':<24}{'symbolic':>9}{'max |numeric|':>15}{'verified':>10}")
for row in cert.identities:
    err = row["max_abs_numeric"]
    print(f"{row['name']:<24}{row['symbolic_zero']!s:>9}{'-' if err is None else f'{err:.1e}':>15}"
          f"{row['verified']!s:>10}")
print("\ncertificate verified:", cert.verified, "| vacuous identities:", cert.vacuous or "none")
"""),
    md(r"""
## Mutations: the certificate can fail

Each named mutation breaks the BRG side in one physically meaningful way; each must falsify at least
one identity, otherwise that identity would be vacuous and the certificate is not accepted.
"""),
    code(r"""
for m in cert.mutations:
    print(f"{m['name']:<20} falsifies {len(m['falsified']):>2}: {', '.join(m['falsified'])}")
    print(f"{'':<20} ({MUTATIONS[m['name']]})")
"""),
    code(r"""
broken = certify(1, "sharp", points=2, mutate="mass-dropped-map")
print("with k(Lambda)^2 = c/Lambda (mass dropped): verified =", broken.verified)
print("failing:", [r["name"] for r in broken.identities if not r["verified"]])
"""),
    md(r"""
## A sampled ensemble against the analytic kernels

2000 random cos-nets of width 256: the two-point function $\langle f(0) f(r)\rangle$ with ±2 standard
errors, against the kernel $G_R(r)$.  Then each network is coarse-grained by the sharp information
shell (with $T = 10$ data points, unit noise and the Fisher of width $N = 1$, so $c = 5$) at the
cutoff $\Lambda = c/(k^2 + m^2)$ of the momentum $k = 1.5$: the sloppy neurons are removed, and the
ensemble must follow the coarse-grained kernel, the propagator cut at $k(\Lambda) = 1.5$.
"""),
    code(r"""
r = np.linspace(0, 4, 17)
members, width = 2000, 256
T_data, k_cut = 10.0, 1.5
cut = T_data / 2 / (k_cut ** 2 + 1)          # Lambda = c / (k^2 + m^2), c = T / (2 N sigma^2)
series = []
for label, kwargs, kernel_kwargs in (
        ("full network", {}, {}),
        (f"stiff sector, Lambda = {cut:.3g}, k = {k_cut:g}",
         dict(cutoff=cut, T=T_data, fisher_width=1), dict(cutoff=cut, T=T_data, width=1))):
    f = sample_cosnet(net, r, members, width, seed=1, **kwargs)
    prod = f[:, :1] * f
    series.append((label, prod.mean(0), prod.std(0, ddof=1) / np.sqrt(members),
                   net.kernel(np.zeros(1), r, **kernel_kwargs)[0]))
fig, ax = plt.subplots(figsize=(6.4, 3.8))
for j, (label, emp, se, exact) in enumerate(series):
    ax.plot(r, exact, "-", color=f"C{j}", label=f"{label}: exact")
    ax.errorbar(r, emp, yerr=2 * se, fmt="o", ms=3.5, capsize=2, color=f"C{j}",
                label=f"{label}: {members} networks, ±2 s.e.")
    print(f"{label}: max |ensemble - exact| / s.e. = {np.max(np.abs(emp - exact) / se):.2f}")
ax.axhline(0, color="0.6", lw=0.6)
ax.set_xlabel("separation $r = |x - y|$")
ax.set_ylabel(r"$\langle f(x) f(y)\rangle$")
ax.legend(fontsize=7)
fig.tight_layout()
print(f"notebook ran in {time.perf_counter() - t_start:.1f} s")
"""),
    md(r"""
The same comparison at scale, with trained networks and every cutoff of a grid, is the `cosnet`
preset of the shell experiment: `symbrg experiment shell --preset cosnet --out DIR`
(`symbrg.ensembles.experiment`), whose figures are drawn by `symbrg.ensembles.plots`.
"""),
]

NOTEBOOKS = {
    "01_kernel_and_derivation.ipynb": KERNEL_NB,
    "02_brg_flow.ipynb": BRG_NB,
    "03_cosnet_theorem.ipynb": COSNET_NB,
}


def build(name: str, cells: list[nbformat.NotebookNode]) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells, metadata={"kernelspec": KERNEL,
                                             "language_info": {"name": "python"}})
    for i, cell in enumerate(nb.cells):        # stable ids: regenerating gives the same bytes
        cell["id"] = f"{Path(name).stem[:2]}-{i:02d}"
    nbformat.validate(nb)
    return nb


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(build(name, cells), HERE / name)
        print("wrote", HERE / name)


if __name__ == "__main__":
    main()
