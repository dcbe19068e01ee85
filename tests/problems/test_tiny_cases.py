"""The tiny cases declared on each ProblemSpec: present, valid, and really tiny."""

import pytest
import torch

import explorer as ex
from explorer.problems import LIKELIHOODS, ProblemSpec, TinyCase
from tests.cases import CASES, MATCHING, NON_MATCHING, TINY_DEFAULTS, ids

#: A tiny case must allow a dense P × P matrix and brute-force references.
MAX_PARAMS = 1_000


def test_every_problem_declares_a_tiny_case():
    """A new problem cannot silently escape the generated tests."""
    missing = [key for key, spec in ex.PROBLEMS.items() if not spec.test_cases]
    assert missing == [], (
        f"problems without test_cases on their ProblemSpec: {missing}; declare at "
        "least one TinyCase (the first is the tiny default of the rule matrix)"
    )
    assert list(TINY_DEFAULTS) == list(ex.PROBLEMS)
    assert {case.key for case in CASES} == set(ex.PROBLEMS)


def test_case_names_are_unique_test_ids():
    names = ids(CASES)
    duplicates = sorted({name for name in names if names.count(name) > 1})
    assert duplicates == []


def test_every_likelihood_is_covered_by_a_case():
    """The identity tests (F = G for matching, F ≠ G otherwise) see every loss."""
    covered = {ex.problem(case.key, **case.options).loss.key for case in CASES}
    assert set(LIKELIHOODS) <= covered, sorted(set(LIKELIHOODS) - covered)
    assert MATCHING and NON_MATCHING
    assert len(MATCHING) + len(NON_MATCHING) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_each_case_builds_tiny_and_its_batches_fit(case):
    problem, theta, batch = case.build()
    assert problem.num_params <= MAX_PARAMS
    assert torch.isfinite(problem.objective(theta, batch))
    if case.batch_size is not None:
        assert batch.size == case.batch_size <= problem.num_examples
    if case.run_batch_size is not None and not problem.is_streaming:
        assert case.run_batch_size <= problem.num_examples


def test_a_case_with_an_unknown_option_is_refused_at_declaration():
    spec = ex.PROBLEMS["linreg_2d"]
    with pytest.raises(ValueError, match="tiny case 'typo'.*no option 'num_sample'"):
        ProblemSpec(
            key="linreg_copy",
            label="copy",
            build=spec.build,
            options=spec.options,
            test_cases=(TinyCase("typo", {"num_sample": 5}),),
        )
    with pytest.raises(ValueError, match="declared twice"):
        ProblemSpec(
            key="linreg_copy",
            label="copy",
            build=spec.build,
            options=spec.options,
            test_cases=(TinyCase("twice"), TinyCase("twice")),
        )


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "Not Snake"}, "snake_case"),
        ({"name": "ok", "batch_size": 0}, "batch_size = 0"),
        ({"name": "ok", "curvature_batch_size": 2.5}, "curvature_batch_size = 2.5"),
        ({"name": "ok", "perturbation": -1.0}, "perturbation = -1.0"),
    ],
)
def test_tiny_case_fields_are_validated(fields, message):
    with pytest.raises(ValueError, match=message):
        TinyCase(**fields)


def test_specs_stay_hashable_and_cases_do_not_alias_their_options():
    options = {"num_samples": 5}
    tiny = TinyCase("aliased", options)
    options["num_samples"] = 6
    assert tiny.options == {"num_samples": 5}
    for spec in ex.PROBLEMS.values():
        hash(spec)
    assert ex.PROBLEMS["logreg_2d"].tiny_default.name == "logreg"
