"""Shampoo and SOAP checked step by step against explicit numpy formulas (float64)."""

import numpy as np
import pytest
import torch

import explorer as ex
from explorer.optimizers.base import StepContext


def square_net(seed=0, n=40, likelihood="gaussian"):
    """Linear(3, 3) → tanh → Linear(3, 3): square weights whose gradient matrices
    are full rank (distinct eigenvalues of G Gᵀ and Gᵀ G). A softmax would give the
    last layer's G rows summing to zero, a null direction where SOAP divides
    round-off by ε.
    """
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(3, 3), torch.nn.Tanh(), torch.nn.Linear(3, 3)
    ).double()
    x = torch.randn(n, 3, dtype=torch.float64)
    if likelihood == "categorical":
        y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    else:
        y = torch.stack([x[:, 0] * x[:, 1], x[:, 2].sin(), x[:, 0] - x[:, 2]], 1)
    return ex.problem_from_module(net, x, y, likelihood)


def drive(problem, rule_key, options, steps, theta=None):
    """θ_0 .. θ_steps (full batch) and the gradients used, through UpdateRule."""
    rule = ex.RULES[rule_key].create(options)
    theta = problem.theta0.clone() if theta is None else theta
    state = rule.init(theta)
    thetas, grads = [theta], []
    for k in range(steps):
        loss, grad = problem.value_and_grad(theta)
        ctx = StepContext(
            problem=problem,
            theta=theta,
            loss=loss,
            grad=grad,
            batch=problem.batch(),
            generator=torch.Generator().manual_seed(0),
            step=k,
        )
        delta, state, _ = rule.update(grad, state, ctx)
        theta = theta + delta
        thetas.append(theta)
        grads.append(grad)
    return torch.stack(thetas), grads


def views(problem):
    out, offset = [], 0
    for shape in problem.param_shapes:
        size = int(np.prod(shape))
        out.append((slice(offset, offset + size), tuple(shape)))
        offset += size
    return out


def np_power(a, power, eps):
    w, u = np.linalg.eigh(a)
    return (u * (np.maximum(w, 0) + eps) ** power) @ u.T


def shampoo_reference(problem, options, steps):
    """Shampoo written out with numpy: the rule's documented formulas."""
    lr, beta2, eps = options["lr"], options["beta2"], options["eps"]
    interval, grafting = options["update_interval"], options["grafting"]
    b1, b2, geps = 0.9, 0.999, 1e-8
    mu, start = options.get("momentum", 0.0), options.get("start", 1)
    theta = problem.theta0.numpy().copy()
    parts = views(problem)
    state = [None] * len(parts)
    velocity = np.zeros_like(theta)
    out = [theta.copy()]
    for t in range(1, steps + 1):
        g_all = problem.grad(torch.from_numpy(theta)).numpy()
        u = np.empty_like(theta)
        corr = 1.0 if beta2 == 1 else 1 - beta2**t
        for i, (span, shape) in enumerate(parts):
            g = g_all[span]
            if state[i] is None:
                state[i] = {"m": np.zeros_like(g), "v": np.zeros_like(g)}
                if len(shape) > 1:
                    m, n = shape[0], g.size // shape[0]
                    state[i].update(L=np.zeros((m, m)), R=np.zeros((n, n)))
                else:
                    state[i]["s"] = np.zeros_like(g)
            st = state[i]
            if len(shape) > 1:
                G = g.reshape(shape[0], -1)
                if beta2 == 1:
                    st["L"] = st["L"] + G @ G.T
                    st["R"] = st["R"] + G.T @ G
                else:
                    st["L"] = beta2 * st["L"] + (1 - beta2) * G @ G.T
                    st["R"] = beta2 * st["R"] + (1 - beta2) * G.T @ G
                if (t - 1) % interval == 0:
                    st["PL"] = np_power(st["L"] / corr, -0.25, eps)
                    st["PR"] = np_power(st["R"] / corr, -0.25, eps)
                d = (st["PL"] @ G @ st["PR"]).reshape(-1)
            else:
                st["s"] = (
                    st["s"] + g * g
                    if beta2 == 1
                    else (beta2 * st["s"] + (1 - beta2) * g * g)
                )
                d = g / np.sqrt(st["s"] / corr + eps)
            st["m"] = b1 * st["m"] + (1 - b1) * g
            st["v"] = b2 * st["v"] + (1 - b2) * g * g
            adam = (st["m"] / (1 - b1**t)) / (np.sqrt(st["v"] / (1 - b2**t)) + geps)
            graft = {"adam": adam, "sgd": g, "none": g}[grafting]
            if t < start:
                d = graft
            elif grafting != "none":
                d = d * np.linalg.norm(graft) / np.linalg.norm(d)
            u[span] = d
        velocity = mu * velocity + u
        theta = theta - lr * velocity
        out.append(theta.copy())
    return torch.from_numpy(np.stack(out))


SHAMPOO_CASES = [
    {"lr": 0.05, "beta2": 1.0, "eps": 1e-6, "update_interval": 1, "grafting": "none"},
    {"lr": 0.05, "beta2": 0.9, "eps": 1e-6, "update_interval": 2, "grafting": "adam"},
    {
        "lr": 0.1,
        "beta2": 0.95,
        "eps": 1e-4,
        "update_interval": 1,
        "grafting": "sgd",
        "momentum": 0.5,
    },
    {
        "lr": 0.05,
        "beta2": 1.0,
        "eps": 1e-6,
        "update_interval": 3,
        "grafting": "adam",
        "start": 2,
    },
]


@pytest.mark.parametrize("options", SHAMPOO_CASES, ids=lambda o: o["grafting"])
def test_shampoo_matches_the_formulas_step_by_step(options):
    problem = square_net(likelihood="categorical")
    rule_options = {k: v for k, v in options.items() if k != "start"}
    if "start" in options:
        rule_options["start_preconditioning_step"] = options["start"]
    thetas, _ = drive(problem, "shampoo", rule_options, 4)
    expected = shampoo_reference(problem, options, 4)
    assert (thetas - expected).abs().max() < 1e-12
    assert (thetas[-1] - thetas[0]).abs().max() > 1e-3  # it moved


def test_shampoo_single_example_is_the_polar_factor():
    """β₂ = 1, ε → 0, one 2-D weight, one example: the first direction is
    (G Gᵀ)^(-1/4) G (GᵀG)^(-1/4) = U Vᵀ over the nonzero singular values of the
    thin SVD G = U S Vᵀ; one example makes G = r xᵀ rank one, so U Vᵀ = G/‖G‖_F.
    ε = 1e-12 balances its bias (ε/σ²) against round-off in the null space of
    G Gᵀ amplified by ε^(-1/4) on each side.
    """
    torch.manual_seed(3)
    net = torch.nn.Linear(3, 2, bias=False).double()
    x = torch.randn(1, 3, dtype=torch.float64)
    y = torch.randn(1, 2, dtype=torch.float64)
    problem = ex.problem_from_module(net, x, y, "gaussian")
    options = {"lr": 0.3, "beta2": 1.0, "eps": 1e-12, "grafting": "none"}
    thetas, grads = drive(problem, "shampoo", options, 1)
    g = grads[0].view(2, 3)
    u, s, vh = torch.linalg.svd(g, full_matrices=False)
    rank = int((s > 1e-12 * s[0]).sum())
    polar = u[:, :rank] @ vh[:rank]
    expected = problem.theta0 - 0.3 * polar.reshape(-1)
    assert rank == 1
    assert (thetas[1] - expected).abs().max() < 1e-9
    # the rank-one polar factor is G / ‖G‖_F
    assert torch.allclose(polar, g / g.norm(), atol=1e-12)


def test_shampoo_closed_form_with_a_full_rank_gradient():
    """Two examples make the 2 × 2 gradient matrix full rank: the direction is then
    the exact polar factor U Vᵀ, compared with (G Gᵀ)^(-1/4) G (GᵀG)^(-1/4)."""
    torch.manual_seed(4)
    net = torch.nn.Linear(2, 2, bias=False).double()
    x = torch.randn(2, 2, dtype=torch.float64)
    y = torch.randn(2, 2, dtype=torch.float64)
    problem = ex.problem_from_module(net, x, y, "gaussian")
    options = {"lr": 1.0, "beta2": 1.0, "eps": 1e-30, "grafting": "none"}
    thetas, grads = drive(problem, "shampoo", options, 1)
    g = grads[0].view(2, 2)
    u, _, vh = torch.linalg.svd(g)
    assert relative(thetas[0] - thetas[1], (u @ vh).reshape(-1)) < 1e-12


def relative(a, b):
    return float((a - b).norm() / b.norm())


def soap_reference(problem, options, steps):
    """SOAP written out (the rule's documented steps); eigenvectors by
    torch.linalg.eigh (unique up to sign here: distinct eigenvalues)."""
    lr, b1, b2 = options["lr"], options["beta1"], options["beta2"]
    sb, eps, freq = options["shampoo_beta"], options["eps"], options["freq"]

    def eigvecs(a):
        return torch.linalg.eigh(torch.from_numpy(a))[1].numpy()

    theta = problem.theta0.numpy().copy()
    parts = views(problem)
    out, state, s = [theta.copy()], None, 0
    for _ in range(steps):
        g_all = problem.grad(torch.from_numpy(theta)).numpy()
        if state is None:
            state = []
            for span, shape in parts:
                g = g_all[span]
                st = {"m": np.zeros_like(g), "v": np.zeros_like(g)}
                if len(shape) > 1:
                    G = g.reshape(shape[0], -1)
                    st["L"], st["R"] = (1 - sb) * G @ G.T, (1 - sb) * G.T @ G
                    st["QL"], st["QR"] = eigvecs(st["L"]), eigvecs(st["R"])
                state.append(st)
            out.append(theta.copy())
            continue
        s += 1
        u = np.empty_like(theta)
        for (span, shape), st in zip(parts, state, strict=True):
            g = g_all[span]
            st["m"] = b1 * st["m"] + (1 - b1) * g
            if len(shape) == 1:
                st["v"] = b2 * st["v"] + (1 - b2) * g * g
                mh, vh = st["m"] / (1 - b1**s), st["v"] / (1 - b2**s)
                u[span] = mh / (np.sqrt(vh) + eps)
                continue
            G, M = g.reshape(shape[0], -1), st["m"].reshape(shape[0], -1)
            QL, QR = st["QL"], st["QR"]
            Gr, Mr = QL.T @ G @ QR, QL.T @ M @ QR
            st["v"] = b2 * st["v"] + (1 - b2) * Gr.reshape(-1) ** 2
            mh, vh = Mr.reshape(-1) / (1 - b1**s), st["v"] / (1 - b2**s)
            N = (mh / (np.sqrt(vh) + eps)).reshape(G.shape)
            u[span] = (QL @ N @ QR.T).reshape(-1)
            st["L"] = sb * st["L"] + (1 - sb) * G @ G.T
            st["R"] = sb * st["R"] + (1 - sb) * G.T @ G
            if s % freq == 0:
                st["QL"], st["QR"] = eigvecs(st["L"]), eigvecs(st["R"])
        theta = theta - lr * u
        out.append(theta.copy())
    return torch.from_numpy(np.stack(out))


@pytest.mark.parametrize("freq", [1, 2, 100])
def test_soap_matches_the_formulas_step_by_step(freq):
    problem = square_net(seed=1)
    # the full-batch gradient of the second update equals the first one, which
    # built the bases, so G' is diagonal up to round-off δ and Adam's G'/(|G'| + ε)
    # turns δ into δ/ε: ε = 1e-3 keeps that below the comparison's 1e-12
    options = {"lr": 0.02, "beta1": 0.9, "beta2": 0.95, "shampoo_beta": 0.9}
    options["eps"] = 1e-3
    thetas, _ = drive(problem, "soap", {**options, "precondition_frequency": freq}, 5)
    expected = soap_reference(problem, {**options, "freq": freq}, 5)
    assert torch.equal(thetas[1], thetas[0])  # the first update takes no step
    assert (thetas - expected).abs().max() < 1e-12
    assert (thetas[-1] - thetas[0]).abs().max() > 1e-3


def test_soap_with_fixed_signed_permutation_bases_is_adam():
    """L = (1−β)GGᵀ and R = (1−β)GᵀG diagonal (distinct entries) at θ₀: their
    eigenvectors are a signed permutation, under which Adam is equivariant; with
    the bases never refreshed, SOAP's steps 2, 3, ... are Adam's steps 1, 2, ...
    """
    net = torch.nn.Linear(2, 2, bias=False).double()
    with torch.no_grad():
        net.weight.copy_(torch.tensor([[0.3, -0.2], [0.1, 0.4]]))
    x = torch.eye(2, dtype=torch.float64)
    # residuals W₀x − y = (1, 0) and (0, 2): G = (1/2)·diag(1, 2) at θ₀
    y = net.weight.detach().T.clone() - torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    y = y.to(torch.float64)
    problem = ex.problem_from_module(net, x, y, "gaussian")
    g0 = problem.grad(problem.theta0).view(2, 2)
    assert torch.count_nonzero(g0 - torch.diag(g0.diagonal())) == 0
    options = {"lr": 0.05, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8}
    soap, _ = drive(problem, "soap", {**options, "precondition_frequency": 100_000}, 6)
    adam, _ = drive(problem, "adam", options, 5)
    assert (soap[1:] - adam).abs().max() < 1e-12
    assert (adam[-1] - adam[0]).abs().max() > 1e-2


def test_soap_on_one_dimensional_tensors_is_adam():
    """A bias-only view: rosenbrock's θ is one 1-D tensor, so SOAP is Adam
    (after its initializing update)."""
    problem = ex.problem("rosenbrock")
    options = {"lr": 0.01, "beta1": 0.9, "beta2": 0.99, "eps": 1e-8}
    soap, _ = drive(problem, "soap", options, 5)
    adam, _ = drive(problem, "adam", options, 4)
    assert (soap[1:] - adam).abs().max() < 1e-12


def test_options_are_validated():
    with pytest.raises(ValueError, match="grafting"):
        ex.RULES["shampoo"].create({"grafting": "adagrad"})
    with pytest.raises(ValueError, match="update_interval"):
        ex.RULES["shampoo"].create({"update_interval": 0})
    with pytest.raises(ValueError, match="precondition_frequency"):
        ex.RULES["soap"].create({"precondition_frequency": 0})
    assert ex.RULES["shampoo"].family == ex.RULES["soap"].family == "first_order"
    assert ex.RULES["shampoo"].reference and ex.RULES["soap"].reference


def test_shampoo_and_soap_run_through_the_runner():
    for key in ("shampoo", "soap"):
        config = ex.RunConfig(
            "moons_mlp", {"num_samples": 40}, key, {}, steps=8, device="cpu"
        )
        history = ex.run(config)
        assert history.status == "ok", history.message
        assert history.last("loss") < history.column("loss")[0]
