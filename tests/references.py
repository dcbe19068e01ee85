"""Brute-force float64 references, independent of the library's fast paths.

Everything here goes through autograd on ``problem.predict`` / ``problem.objective``
(``torch.func``), explicit expectations over classes, or Gauss-Hermite quadrature;
none of it uses the closed-form output matrices or the hand-written MLP passes.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.func import grad, hessian, jacrev, vmap

from explorer.problems.base import Batch, Problem


def full(problem: Problem, batch: Batch | None) -> Batch:
    return problem.batch() if batch is None else batch


def hessian_ref(problem: Problem, theta, batch=None):
    """Reverse-over-reverse autograd, one backward pass per column.

    Not ``torch.func.hessian``: on a model with an ``nn.Embedding`` (tests/problems/
    test_modules.py) it was measured 6.6 % off both reverse-over-reverse autograd
    and central finite differences (which agreed to 2e-10).
    """
    batch = full(problem, batch)
    return torch.autograd.functional.hessian(
        lambda t: problem.objective(t, batch), theta.detach()
    )


def jacobian_ref(problem: Problem, theta, batch=None):
    """Per-example Jacobians (N, C, P) by reverse mode."""
    batch = full(problem, batch)
    return jacrev(lambda t: problem.predict(t, batch.inputs))(theta)


def per_example_output_grad(problem: Problem, outputs, targets):
    """∇_z L(y_n, z_n) by autograd (N, C)."""

    def one(z, y):
        return problem.loss.per_example(z.unsqueeze(0), y.unsqueeze(0))[0]

    return vmap(grad(one))(outputs, targets)


def output_hessian_ref(problem: Problem, outputs, targets):
    """∇²_z L(y_n, z_n) by autograd (N, C, C)."""

    def one(z, y):
        return problem.loss.per_example(z.unsqueeze(0), y.unsqueeze(0))[0]

    return vmap(hessian(one))(outputs, targets)


def _gauss_hermite(dims: int, dtype):
    """Nodes (S, dims) and weights (S,) for E over a standard normal in ``dims``."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(40 if dims == 1 else 24)
    grids = np.meshgrid(*([nodes] * dims), indexing="ij")
    weight_grids = np.meshgrid(*([weights] * dims), indexing="ij")
    points = np.stack([g.ravel() for g in grids], -1)
    mass = np.prod(np.stack([w.ravel() for w in weight_grids], -1), -1)
    return torch.tensor(points, dtype=dtype), torch.tensor(
        mass / mass.sum(), dtype=dtype
    )


def _outer_expectation(problem, outputs, support, weights):
    """Σ_s w_ns ∇L(y_s, z_n) ∇L(y_s, z_n)ᵀ for support targets (S, N, ...)."""
    total = 0
    for y, w in zip(support, weights, strict=True):
        g = per_example_output_grad(problem, outputs, y)
        total = total + w.view(-1, 1, 1) * g.unsqueeze(-1) * g.unsqueeze(-2)
    return total


def output_fisher_ref(problem: Problem, outputs):
    """E_{y~R(z)}[∇L ∇Lᵀ] by enumeration (classes) or Gauss-Hermite quadrature."""
    key = problem.loss.key
    n, c = outputs.shape
    if key == "categorical":
        probs = torch.softmax(outputs, -1)
        support = [torch.full((n,), k, dtype=torch.long) for k in range(c)]
        return _outer_expectation(problem, outputs, support, probs.T)
    if key == "bernoulli":
        # Independent outputs: F_R is diagonal with per-output Bernoulli expectations.
        p = torch.sigmoid(outputs)
        diag = torch.zeros_like(outputs)
        for label in (0.0, 1.0):
            y = torch.full_like(outputs, label)
            g = per_example_output_grad(problem, outputs, y)
            weight = p if label == 1.0 else 1 - p
            diag = diag + weight * g.pow(2)
        return torch.diag_embed(diag)
    if key == "poisson":
        # Independent counts: F_R is diagonal; sum over y = 0…K with the tail
        # beyond K below 1e-30 (K ≥ λ + 12√λ + 40).
        rate = problem.loss.mean(outputs)
        top = int(float(rate.max()) + 12 * float(rate.max()) ** 0.5 + 40)
        diag = torch.zeros_like(outputs)
        for count in range(top + 1):
            y = torch.full_like(outputs, float(count))
            g = per_example_output_grad(problem, outputs, y)
            pmf = torch.exp(count * rate.log() - rate - math.lgamma(count + 1))
            diag = diag + pmf * g.pow(2)
        return torch.diag_embed(diag)
    if key == "gaussian_heteroscedastic":
        # outputs [μ, s] with σ = exp(s/2): quadrature over the D = C/2 targets
        d = c // 2
        assert d <= 2, "quadrature reference is written for at most two targets"
        nodes, node_weights = _gauss_hermite(d, outputs.dtype)
        mean, sigma = outputs[:, :d], (0.5 * outputs[:, d:]).exp()
        support = [mean + sigma * e for e in nodes]
    elif key == "gaussian_mean_scale":
        nodes, node_weights = _gauss_hermite(1, outputs.dtype)
        mean = outputs[:, 0]
        log_scale = problem.loss.parameterization == "log_sigma"
        sigma = outputs[:, 1].exp() if log_scale else outputs[:, 1]
        support = [(mean + sigma * e).unsqueeze(-1) for e in nodes[:, 0]]
    else:  # Gaussian likelihoods with mean mu(z): tensor-product quadrature in C dims
        assert c <= 2, "quadrature reference is written for at most two outputs"
        nodes, node_weights = _gauss_hermite(c, outputs.dtype)
        sigma = problem.loss.sigma
        mean = problem.loss.mean(outputs)
        support = [mean + sigma * e for e in nodes]
    weights = [w.expand(n) for w in node_weights]
    return _outer_expectation(problem, outputs, support, weights)


def gram_ref(problem, theta, output_matrices, batch=None):
    """(1/N) Σ_n J_nᵀ M_n J_n from the brute-force Jacobian."""
    jac = jacobian_ref(problem, theta, batch)
    return torch.einsum("ncp,ncd,ndq->pq", jac, output_matrices, jac) / jac.shape[0]


def ggn_ref(problem, theta, batch=None):
    batch = full(problem, batch)
    outputs = problem.predict(theta, batch.inputs)
    return gram_ref(
        problem, theta, output_hessian_ref(problem, outputs, batch.targets), batch
    )


def fisher_ref(problem, theta, batch=None):
    batch = full(problem, batch)
    outputs = problem.predict(theta, batch.inputs)
    return gram_ref(problem, theta, output_fisher_ref(problem, outputs), batch)


def ef_ref(problem, theta, batch=None):
    """(1/N) Σ g_n g_nᵀ from per-example gradients of the per-example loss."""
    batch = full(problem, batch)

    def per_example(t, x, y):
        return problem.loss.per_example(
            problem.predict(t, x.unsqueeze(0)), y.unsqueeze(0)
        )[0]

    grads = vmap(grad(per_example), in_dims=(None, 0, 0))(
        theta, batch.inputs, batch.targets
    )
    return grads.T @ grads / grads.shape[0]


REFERENCES = {
    "hessian": hessian_ref,
    "ggn": ggn_ref,
    "fisher": fisher_ref,
    "ef": ef_ref,
}


def tensor_spans(problem):
    out, offset = [], 0
    for shape in problem.param_shapes:
        size = 1
        for d in shape:
            size *= d
        rows = shape[0] if len(shape) else 1
        out.append((slice(offset, offset + size), rows, size // rows))
        offset += size
    return out


def per_example_gradients(problem, theta, batch, mode):
    """Rows g_nk (N·K, P) by autograd, independently of the operator's path:
    J_nᵀ r_nk with r the columns of an eigen square root of the brute-force output
    Fisher ("exact"), or the per-example loss gradients ("empirical")."""
    if mode == "empirical":
        rows = []
        for n in range(batch.size):
            one = Batch(batch.inputs[n : n + 1], batch.targets[n : n + 1])
            rows.append(grad(lambda t, b=one: problem.objective(t, b))(theta))
        return torch.stack(rows)
    jac = jacobian_ref(problem, theta, batch)  # (N, C, P)
    outputs = problem.predict(theta, batch.inputs)
    fisher = output_fisher_ref(problem, outputs)  # (N, C, C)
    values, vectors = torch.linalg.eigh(fisher)
    roots = vectors * values.clamp(min=0).sqrt().unsqueeze(-2)  # F = R Rᵀ
    return torch.einsum("ncp,nck->nkp", jac, roots).reshape(-1, problem.num_params)


def shampoo_ref(problem: Problem, theta, batch=None, mode="exact"):
    """The dense C: per tensor kron(L, R)/tr L from explicit outer products."""
    batch = full(problem, batch)
    grads = per_example_gradients(problem, theta, batch, mode)
    n = batch.size
    dense = torch.zeros(problem.num_params, problem.num_params, dtype=theta.dtype)
    for span, m, k in tensor_spans(problem):
        mats = grads[:, span].reshape(-1, m, k)
        left = sum(g @ g.T for g in mats) / n
        right = sum(g.T @ g for g in mats) / n
        dense[span, span] = torch.kron(left, right) / left.trace()
    return dense


def relative_error(actual, expected) -> float:
    actual, expected = actual.detach(), expected.detach()  # e.g. p.model's weights
    scale = expected.norm().clamp_min(1e-300)
    return float((actual - expected).norm() / scale)
