"""Every exact operator against a brute-force float64 reference, to 1e-10 relative."""

import pytest
import torch

import explorer as ex
from tests.cases import CASES, ids
from tests.references import REFERENCES, relative_error

TOLERANCE = 1e-10


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
@pytest.mark.parametrize("key", sorted(REFERENCES))
def test_dense_matches_reference(case, key):
    problem, theta, batch = case.build()
    operator = ex.curvature(key, problem, theta, batch=batch)
    expected = REFERENCES[key](problem, theta, batch)
    assert relative_error(operator.dense(), expected) < TOLERANCE
    v = torch.randn(
        problem.num_params,
        generator=torch.Generator().manual_seed(3),
        dtype=theta.dtype,
    )
    assert relative_error(operator.matvec(v), expected @ v) < TOLERANCE
    assert relative_error(operator.diag(), expected.diagonal()) < TOLERANCE


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_structured_match_dense_entries(case):
    problem, theta, batch = case.build()
    for base in ("ggn", "fisher", "ef", "hessian"):
        dense = REFERENCES[base](problem, theta, batch)
        diagonal = ex.curvature(f"diag_{base}", problem, theta, batch=batch).dense()
        assert relative_error(diagonal, torch.diag(dense.diagonal())) < TOLERANCE
    for base in ("ggn", "fisher"):
        dense = REFERENCES[base](problem, theta, batch)
        blocks = ex.curvature(f"block_{base}", problem, theta, batch=batch).dense()
        mask = torch.zeros_like(dense, dtype=torch.bool)
        for _, span in problem.blocks():
            mask[span, span] = True
        assert relative_error(blocks, torch.where(mask, dense, 0.0)) < TOLERANCE
        assert blocks[~mask].abs().max() == 0 if (~mask).any() else True


def test_float32_agrees_with_float64_reference():
    case = CASES[9]  # digits_tanh
    problem64, theta64, _ = case.build(torch.float64)
    problem32, theta32, _ = case.build(torch.float32)
    expected = REFERENCES["ggn"](problem64, theta64)
    actual = ex.curvature("ggn", problem32, theta32).dense().double()
    assert relative_error(actual, expected) < 1e-5
