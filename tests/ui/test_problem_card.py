"""The problem card's facts and the grouped Problem selector, without Streamlit
rendering: P and N of built problems against their architecture, and the split of
curvatures into dense, matrix-free only and unavailable against the registry's own
incompatibility answers and a byte limit computed here."""

import math

import pytest
import torch

import explorer as ex
from explorer.curvature.base import DENSE_LIMIT_BYTES
from explorer.problems.spec import PROBLEM_GROUPS, PROBLEMS, ProblemSpec
from explorer.ui import problem_card as card
from explorer.ui.compare import grouped_problems, problem_choice, problem_group

SERVER_LIMIT = 3000  # the Curvature page's default EXPLORER_MAX_DENSE_P


@pytest.fixture(scope="module")
def digits():
    return ex.problem("digits_mlp")


def selectable():
    return [key for key, spec in ex.CURVATURES.items() if spec.selectable]


def test_digits_card_states_p_n_and_likelihood(digits):
    facts = card.card_facts(PROBLEMS["digits_mlp"], digits, SERVER_LIMIT)
    # MLP 64-32-10: weights and biases of two linear layers
    assert facts.num_params == (64 * 32 + 32) + (32 * 10 + 10) == 2410
    # scikit-learn's 1,797 digits, a fifth held out
    assert (facts.num_train, facts.num_test) == (1438, 359)
    assert facts.num_train + facts.num_test == 1797
    assert facts.architecture == "MLP 64-32-10, tanh"
    assert facts.label == "Digits 8×8 (MLP)" and facts.group == "real data"
    assert facts.likelihood == digits.loss.describe()
    assert "cross-entropy" in facts.likelihood
    assert card.size_line(facts) == "P = 2,410 parameters · N = 1,438 train / 359 test"
    # 2,410² float64 entries are 44 MiB: under both limits, every curvature dense
    assert DENSE_LIMIT_BYTES >= 2410**2 * 8
    assert [c.key for c in facts.with_status("dense")] == selectable()
    assert card.curvature_summary(facts) == f"{len(selectable())} dense"


def test_the_split_follows_incompatibility_and_both_dense_limits(digits):
    rosenbrock = ex.problem("rosenbrock")
    facts = card.card_facts(PROBLEMS["rosenbrock"], rosenbrock, SERVER_LIMIT)
    expected = {
        key: ex.CURVATURES[key].incompatibility(rosenbrock) for key in selectable()
    }
    unavailable = {c.key: c.reason for c in facts.with_status("unavailable")}
    assert unavailable == {k: r for k, r in expected.items() if r is not None}
    assert "kfac" in unavailable and "nn.Linear" in unavailable["kfac"]
    assert {c.key for c in facts.with_status("dense")} == {
        k for k, r in expected.items() if r is None
    }
    lines = "\n".join(card.curvature_lines(facts))
    assert f"K-FAC: {unavailable['kfac']}" in lines
    names = ", ".join(ex.CURVATURES[key].label for key in unavailable)
    assert card.curvature_summary(facts).endswith(
        f"{len(unavailable)} unavailable ({names})"
    )

    # The server's limit on P: 2,409 refuses digits' 2,410, 2,410 admits it.
    below = card.card_facts(PROBLEMS["digits_mlp"], digits, 2409)
    assert [c.status for c in below.curvatures] == ["matrix_free"] * len(selectable())
    assert below.curvatures[0].reason == (
        "P = 2,410 is above this server's limit of 2,409 for dense matrices "
        "(EXPLORER_MAX_DENSE_P)"
    )
    assert {c.status for c in card.curvature_statuses(digits, 2410)} == {"dense"}
    # The library's byte limit, computed here: P² entries of 8 bytes (float64).
    needed = digits.num_params**2 * torch.finfo(torch.float64).bits // 8
    assert needed == 46_464_800
    tight = card.curvature_statuses(digits, SERVER_LIMIT, max_bytes=needed - 1)
    assert {c.status for c in tight} == {"matrix_free"}
    assert "P = 2,410 needs 44.3 MiB" in tight[0].reason
    assert {c.status for c in card.curvature_statuses(digits, 3000, needed)} == {
        "dense"
    }


def test_float32_halves_the_bytes_of_a_dense_matrix():
    p = 20_000
    assert card.dense_refusal(p, 8, 10**6) is not None  # 3.0 GiB in float64
    assert 4 * p**2 <= DENSE_LIMIT_BYTES < 8 * p**2
    assert card.dense_refusal(p, 4, 10**6) is None  # 1.5 GiB in float32


def test_data_lines_without_a_test_set_and_for_streaming_problems():
    linreg = ex.problem("linreg_2d")
    facts = card.card_facts(PROBLEMS["linreg_2d"], linreg, SERVER_LIMIT)
    assert facts.num_params == 2 and facts.num_test is None
    assert card.size_line(facts) == (
        f"P = 2 parameters · N = {linreg.num_examples:,} train (no test set)"
    )
    stream = ex.problem("stream_logreg")
    facts = card.card_facts(PROBLEMS["stream_logreg"], stream, SERVER_LIMIT)
    assert facts.streaming
    assert f"fixed sample of {stream.num_examples:,}" in card.size_line(facts)
    assert "fresh samples every step" in card.size_line(facts)


def _spec(key: str, group: str, source: str = "builtin") -> ProblemSpec:
    return ProblemSpec(key, key.title(), build=None, group=group, source=source)


def test_the_selector_orders_by_group_and_files_plugins_under_yours():
    registry = {
        spec.key: spec
        for spec in (
            _spec("net_a", "networks"),
            _spec("real_a", "real data"),
            _spec("mine", "toys", source="plugins/mine.py"),  # a plugin's "toys"
            _spec("toy_a", "toys"),
            _spec("net_b", "networks"),
            _spec("toy_b", "toys"),
        )
    }
    assert problem_group(registry["mine"]) == "yours"
    assert grouped_problems(registry) == [
        "toy_a",
        "toy_b",
        "net_a",
        "net_b",
        "real_a",
        "mine",
    ]
    # The real registry: groups never go back, and each entry names its group.
    keys = grouped_problems()
    indices = [PROBLEM_GROUPS.index(problem_group(PROBLEMS[k])) for k in keys]
    assert indices == sorted(indices) and sorted(keys) == sorted(PROBLEMS)
    assert problem_choice("digits_mlp") == "real data · Digits 8×8 (MLP)"
    assert problem_choice("linreg_2d") == "toys · Linear regression (2 weights)"


def test_every_registered_problem_gets_a_card():
    """Any registered problem, plugins' included: P from its parameter shapes."""
    for key in ("gaussian_fit", "moons_mlp", "poisson_2d"):
        problem = ex.problem(key)
        facts = card.card_facts(PROBLEMS[key], problem, SERVER_LIMIT)
        assert facts.num_params == sum(math.prod(s) for s in problem.param_shapes)
        assert len(facts.curvatures) == len(selectable())
        assert facts.architecture == (PROBLEMS[key].architecture or problem.label)
