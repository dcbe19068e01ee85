"""Factored Tikhonov damping keeps every K-FAC factor positive definite for λ > 0,
even on a one-example curvature batch (issue 12: a false "kfac + λI is not
positive definite" on stream_logreg)."""

import pytest
import torch

import explorer as ex
from explorer.curvature.solvers import NonFiniteCurvatureError
from explorer.problems.base import Batch
from tests.references import relative_error

DAMPINGS = (1e-8, 1e-4, 0.0774, 1.0)
ONE_EXAMPLE = [
    ("digits_mlp", {"hidden": (6,), "train_size": 30}, "exact"),
    ("digits_mlp", {"hidden": (6,), "train_size": 30}, "mc"),
    ("moons_mlp", {"hidden": (4,), "num_samples": 20}, "empirical"),
    ("stream_logreg", {"dim": 4, "eval_size": 100}, "exact"),
]


def _one_example_kfac(key, options, output_factor):
    problem = ex.problem(key, **options)
    theta = problem.theta0 + 0.5 * torch.randn(
        problem.num_params, generator=torch.Generator().manual_seed(3),
        dtype=torch.float64,
    )  # fmt: skip
    batch = Batch(problem.inputs[:1], problem.targets[:1])
    kfac = ex.curvature(
        "kfac", problem, theta, batch=batch, output_factor=output_factor
    )
    return problem, kfac


def _block(vector, layer):
    weight = vector[layer.weight].view(layer.out_features, -1)
    if layer.bias is None:
        return weight
    return torch.cat([weight, vector[layer.bias].unsqueeze(1)], 1)


@pytest.mark.parametrize("damping", DAMPINGS)
@pytest.mark.parametrize(("key", "options", "output_factor"), ONE_EXAMPLE)
def test_one_example_factors_stay_positive_definite_and_the_solve_is_exact(
    key, options, output_factor, damping
):
    problem, kfac = _one_example_kfac(key, options, output_factor)
    b = torch.randn(
        problem.num_params, generator=torch.Generator().manual_seed(5),
        dtype=torch.float64,
    )  # fmt: skip
    x = kfac.solve(b, damping)
    assert torch.isfinite(x).all()
    for index, layer in enumerate(kfac.layers):
        a, s = kfac.input_factors[index], kfac.output_factors[index]
        # one example: A = x̄x̄ᵀ has rank one, S rank at most one or C − 1
        assert torch.linalg.matrix_rank(a) <= 1
        a_shift, s_shift = kfac.factored_damping(index, damping)
        assert a_shift > 0 and s_shift > 0
        assert a_shift * s_shift == pytest.approx(damping, rel=1e-12)
        eye_a = torch.eye(len(a), dtype=a.dtype)
        eye_s = torch.eye(len(s), dtype=s.dtype)
        for damped in (a + a_shift * eye_a, s + s_shift * eye_s):
            assert float(torch.linalg.eigvalsh(damped)[0]) > 0
        # reference: the Kronecker identity (S_λ ⊗ A_λ)⁻¹ vec(V̄) = S_λ⁻¹ V̄ A_λ⁻¹
        expected = torch.linalg.solve(s + s_shift * eye_s, _block(b, layer))
        expected = torch.linalg.solve(a + a_shift * eye_a, expected.T).T
        assert relative_error(_block(x, layer), expected) < 1e-8


def test_a_factor_shift_below_round_off_is_raised_to_it_not_an_indefinite_error():
    problem, kfac = _one_example_kfac("moons_mlp", {"hidden": (4,)}, "exact")
    a = kfac.input_factors[0]
    # a rank-one factor whose null directions carry −2e-16 of round-off: with a
    # shift of 1e-20 the shifted factor is not numerically positive definite
    values, vectors = torch.linalg.eigh(a)
    values = torch.where(values < 1e-10, torch.full_like(values, -2e-16), values)
    noisy = (vectors * values) @ vectors.T
    broken = kfac.with_factors([noisy, *kfac.input_factors[1:]], kfac.output_factors)
    b = torch.ones(problem.num_params, dtype=torch.float64)
    x = broken.solve(b, 1e-40)
    assert torch.isfinite(x).all()


def test_non_finite_factors_are_a_divergence_not_an_indefinite_curvature():
    problem, kfac = _one_example_kfac("moons_mlp", {"hidden": (4,)}, "exact")
    inf = torch.full_like(kfac.input_factors[0], float("inf"))
    broken = kfac.with_factors([inf, *kfac.input_factors[1:]], kfac.output_factors)
    with pytest.raises(NonFiniteCurvatureError, match="non-finite"):
        broken.solve(torch.ones(problem.num_params, dtype=torch.float64), 0.1)
    # in a run, the loop reports it as diverged (moons, λ = 1e-4 fixed, one
    # example per curvature batch once ended "smallest eigenvalue is inf")
    history = ex.run(ex.RunConfig(
        "moons_mlp", rule="kfac", steps=20, curvature_batch_size=1,
        rule_options={"damping": 1e-4, "damping_adaptation": "fixed",
                      "output_factor": "mc"},
    ))  # fmt: skip
    assert history.status in ("ok", "diverged")
    assert "not positive definite" not in history.message
