"""PyTorch models as symbrg networks (:mod:`symbrg.interop.torch`): the converted network's outputs
and parameter Jacobians equal PyTorch's own (autograd, ``torch.func.jacrev``), so the Fisher metric
and the information-shell coarse graining run on a user's trained model; bad models are refused."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.func import functional_call, jacrev  # noqa: E402

from symbrg.core.errors import InvalidArgument, ShapeMismatch, Unsupported  # noqa: E402
from symbrg.ensembles.experiment import fisher_split, renormalize  # noqa: E402
from symbrg.information.spectrum import fisher_dense  # noqa: E402
from symbrg.interop.torch import from_torch, to_torch  # noqa: E402

nn = torch.nn
X = np.random.default_rng(0).normal(size=(6, 3))


def _model(act: nn.Module | None, seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    mid = [act] if act is not None else []
    return nn.Sequential(nn.Linear(3, 12), *mid, nn.Linear(12, 7),
                         *([type(act)()] if act is not None and not isinstance(act, nn.LeakyReLU)
                           else [nn.LeakyReLU(0.2)] if act is not None else []),
                         nn.Linear(7, 2)).double()


def _torch_jacobian(model: nn.Sequential, x: np.ndarray) -> np.ndarray:
    """(P, k, n_params) by autograd, parameters in symbrg's order (W row-major, then b, per layer)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    jac = jacrev(lambda p: functional_call(model, p, (torch.as_tensor(x),)))(params)
    p, k = x.shape[0], 2
    return torch.cat([jac[name].reshape(p, k, -1) for name in params], -1).detach().numpy()


@pytest.mark.parametrize("act", [nn.ReLU(), nn.Tanh(), nn.GELU(), nn.Sigmoid(), nn.SiLU(), nn.Softplus(),
                                 nn.LeakyReLU(0.2), nn.Identity(), None])
def test_outputs_and_jacobians_equal_pytorch(act):
    model = _model(act)
    net, ens = from_torch(model)
    out = model(torch.as_tensor(X)).detach().numpy()
    assert np.abs(net.forward(ens, X)[0] - out).max() < 1e-13
    assert np.abs(net.jacobian(ens, X)[0] - _torch_jacobian(model, X)).max() < 1e-12


def test_fisher_metric_of_a_torch_model_is_autograds_gauss_newton():
    model = _model(nn.Tanh())
    net, ens = from_torch(model)
    jt = _torch_jacobian(model, X)
    expected = np.einsum("pka,pkb->ab", jt, jt) / (X.shape[0] * 0.5)
    assert np.allclose(fisher_dense(net.jacobian(ens, X), noise_var=0.5)[0], expected, rtol=1e-12, atol=1e-14)


def test_models_become_ensemble_members_and_coarse_graining_runs_on_them():
    models = [_model(nn.ReLU(), seed) for seed in range(3)]
    net, ens = from_torch(models)
    assert ens.members == 3
    for k, m in enumerate(models):
        assert np.allclose(net.forward(ens, X)[k], m(torch.as_tensor(X)).detach().numpy(), atol=1e-13)
    theta, std = ens.flat("all"), net.prior_std("all")
    xi = net.init(3, seed=1).flat("all")
    same, _ = renormalize(theta, fisher_split(net.jacobian(ens, X), std, "diagonal"), 0.0, xi, std)
    assert np.array_equal(same, theta)                                   # Lambda = 0 keeps every parameter
    split = fisher_split(net.jacobian(ens, X), std, "eigen")
    coarse, sloppy = renormalize(theta, split, float(np.median(split.sensitivities)), xi, std)
    assert 0 < sloppy.mean() < 1 and not np.allclose(coarse, theta)
    to_torch(net, ens.with_flat(coarse, "all"), models[1], member=1)      # back into PyTorch
    assert np.allclose(models[1](torch.as_tensor(X)).detach().numpy(),
                       net.forward(ens.with_flat(coarse, "all"), X)[1], atol=1e-12)


def test_prior_defaults_to_pytorchs_initialization():
    net, _ = from_torch(_model(nn.ReLU()))
    assert net.parameterization == "standard"
    assert np.isclose(net.weight_std(0), 1 / np.sqrt(3 * 3)) and np.isclose(net.bias_std(1), 1 / np.sqrt(3 * 12))
    fresh = torch.cat([p.detach().ravel() for p in nn.Linear(400, 300).parameters()]).numpy()
    assert abs(fresh[:120000].std() / (1 / np.sqrt(3 * 400)) - 1) < 0.02     # what PyTorch draws


@pytest.mark.parametrize("model, argument, error", [
    (nn.Sequential(nn.Linear(3, 4), nn.Conv1d(1, 1, 1), nn.Linear(4, 1)), "model", Unsupported),
    (nn.Sequential(nn.Linear(3, 4), nn.GELU(approximate="tanh"), nn.Linear(4, 1)), "model", Unsupported),
    (nn.Sequential(nn.Linear(3, 4), nn.ReLU()), "model", Unsupported),
    (nn.Sequential(nn.ReLU(), nn.Linear(3, 4)), "model", Unsupported),
    (nn.Linear(3, 4), "model", InvalidArgument),
    ([nn.Sequential(nn.Linear(3, 4)), nn.Sequential(nn.Linear(3, 5))], "models", ShapeMismatch),
    ([], "models", InvalidArgument)])
def test_unsupported_models_are_refused_naming_the_argument(model, argument, error):
    with pytest.raises(error) as info:
        from_torch(model)
    assert info.value.argument == argument
