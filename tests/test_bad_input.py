"""Bad input gets a ValueError naming the value and the allowed range."""

import pytest
import torch

import explorer as ex
from explorer.curvature import base as curvature_base


def test_unknown_problem_lists_valid_keys():
    with pytest.raises(ValueError, match="unknown problem 'digit'.*digits_mlp"):
        ex.problem("digit")
    with pytest.raises(KeyError):
        ex.PROBLEMS["digit"]


def test_unknown_curvature_lists_valid_keys():
    problem = ex.problem("linreg_2d")
    with pytest.raises(ValueError, match="unknown curvature 'gnn'.*ggn"):
        ex.curvature("gnn", problem, problem.theta0)


def test_unknown_and_out_of_range_options():
    with pytest.raises(ValueError, match="no option 'hiden'; valid options: hidden"):
        ex.problem("digits_mlp", hiden=(3,))
    with pytest.raises(
        ValueError, match=r"'test_fraction' = 1.5 is out of range.*\[0, 0.9\]"
    ):
        ex.problem("digits_mlp", test_fraction=1.5)
    with pytest.raises(ValueError, match="'activation' = 'swish'.*one of 'tanh'"):
        ex.problem("digits_mlp", activation="swish")
    with pytest.raises(ValueError, match="theta0"):
        ex.problem("linreg_2d", theta0=(1.0, 2.0, 3.0))
    problem = ex.problem("moons_mlp")
    with pytest.raises(ValueError, match="'samples' = 0 is out of range"):
        ex.curvature("fisher_mc", problem, problem.theta0, samples=0)
    with pytest.raises(ValueError, match="'output_factor' = 'typo'"):
        ex.curvature("kfac", problem, problem.theta0, output_factor="typo")


def test_dtype_device_and_seed_errors():
    with pytest.raises(ValueError, match="dtype"):
        ex.problem("linreg_2d", dtype="float16")
    with pytest.raises(ValueError, match="seed"):
        ex.problem("linreg_2d", seed=-1)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            ex.problem("linreg_2d", device="cuda")
    assert ex.problem("linreg_2d", device="auto").device.type in ("cpu", "cuda")


def test_wrong_shapes_and_non_finite_theta():
    problem = ex.problem("linreg_2d")
    with pytest.raises(ValueError, match=r"shape \(3,\).*needs \(2,\)"):
        ex.curvature("ggn", problem, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="non-finite"):
        ex.curvature(
            "ggn", problem, torch.tensor([float("nan"), 0.0], dtype=torch.float64)
        )
    operator = ex.curvature("ggn", problem, problem.theta0)
    with pytest.raises(ValueError, match=r"expected \(2,\)"):
        operator.matvec(torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected \(2, K\)"):
        operator.matmat(torch.zeros(5, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="damping"):
        operator.solve(torch.zeros(2, dtype=torch.float64), damping=-1.0)


def test_dense_refused_above_the_limit(monkeypatch):
    problem = ex.problem("digits_mlp")
    operator = ex.curvature("ggn", problem, problem.theta0)
    with pytest.raises(
        ex.DenseTooLargeError, match=r"P = 2,410 needs 44 MiB.*matrix-free"
    ):
        operator.dense(max_bytes=2**20)
    monkeypatch.setattr(curvature_base, "DENSE_LIMIT_BYTES", 1000)
    with pytest.raises(ValueError, match="limit"):
        operator.dense()


def test_kfac_refused_without_linear_layers():
    problem = ex.problem("rosenbrock")
    with pytest.raises(
        ValueError, match="K-FAC needs a model with at least one nn.Linear"
    ):
        ex.curvature("kfac", problem, problem.theta0)


def test_indefinite_system_names_the_remedy():
    problem = ex.problem("tiny_tanh")
    saddle = torch.zeros(2, dtype=torch.float64)
    hessian = ex.curvature("hessian", problem, saddle)
    with pytest.raises(ex.IndefiniteCurvatureError) as info:
        hessian.solve(torch.ones(2, dtype=torch.float64), damping=0.0)
    error = info.value
    smallest = float(torch.linalg.eigvalsh(hessian.dense())[0])
    assert error.min_eigenvalue == pytest.approx(smallest)
    assert f"raise the damping above {-smallest:.3g}" in str(error)
    assert "'ggn'" in str(error)
    # with enough damping it works, and never returns NaN
    x = hessian.solve(torch.ones(2, dtype=torch.float64), damping=-smallest + 0.1)
    assert torch.isfinite(x).all()
    diag = ex.curvature(
        "diag_hessian", problem, torch.tensor([0.5, -0.5], dtype=torch.float64)
    )
    if float(diag.diag().min()) < 0:
        with pytest.raises(ex.IndefiniteCurvatureError):
            diag.solve(torch.ones(2, dtype=torch.float64), 0.0)


def test_cg_reports_negative_curvature(monkeypatch):
    monkeypatch.setattr(curvature_base, "DENSE_SOLVE_MAX_PARAMS", 0)
    problem = ex.problem("tiny_tanh")
    hessian = ex.curvature("hessian", problem, torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ex.IndefiniteCurvatureError, match="negative curvature"):
        hessian.solve(torch.tensor([1.0, 1.0], dtype=torch.float64), damping=0.0)
