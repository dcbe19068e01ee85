"""Every claim of THEORY.md §5 holds: each paper-tour preset's check, small size.

The same functions drive the Paper tour page, so a badge the page shows is a number
this suite checks. Failure messages carry the measured numbers.
"""

import dataclasses
import json
import math
import re
from pathlib import Path

import plotly.graph_objects as go
import pytest
import torch

from explorer.curvature import curvature
from explorer.presets import (
    CLAIMS,
    PRESETS,
    SIZES,
    CheckResult,
    Measurement,
    format_number,
    run_check,
    run_preset,
)
from explorer.presets.base import Catalog, Study
from explorer.presets.helpers import (
    fisher_by_expectation,
    reparameterized,
    residual_term,
)
from explorer.problems.spec import problem
from explorer.runs import RunConfig
from explorer.ui.urlstate import from_query, to_query

#: Checks that take more than a few seconds on 2 shared cores.
SLOW = {"c6_fisher_efficiency", "c3_tuned_comparison"}

#: Links the app wrote before the presets became data (tests/test_compatibility.py).
LINKS = json.loads(
    (Path(__file__).parent / "data" / "urls_before.json").read_text(encoding="utf-8")
)


def _param(key):
    return pytest.param(key, marks=pytest.mark.slow) if key in SLOW else key


@pytest.mark.parametrize("key", [_param(key) for key in PRESETS])
def test_claim_holds(key):
    result = run_check(key, "small")
    assert result.measurements, key
    assert result.passed, result.failure_message()


@pytest.mark.slow
@pytest.mark.parametrize("key", list(PRESETS))
def test_claim_holds_at_full_size(key):
    result = run_check(key, "full")
    assert result.passed, result.failure_message()


def test_every_claim_has_a_preset():
    claims = {preset.claim for preset in PRESETS.values()}
    assert claims == set(CLAIMS)
    assert {f"C{i}" for i in range(1, 8)} <= claims


@pytest.mark.parametrize("key", list(PRESETS))
def test_preset_texts_and_sizes(key):
    preset = PRESETS[key]
    assert preset.title and preset.formula and preset.reference
    sentences = re.split(r"(?<=[.!?])\s+", preset.explanation.strip())
    assert len(sentences) == 2, preset.explanation
    assert preset.figures
    for size in SIZES:
        setup = preset.setup(size)
        if setup.problem is not None:
            setup.build_problem()  # valid options


@pytest.mark.parametrize(
    "key", [key for key, preset in PRESETS.items() if preset.experiments]
)
def test_experiments_round_trip_through_the_url(key):
    for size in SIZES:
        for experiment in PRESETS[key].setup(size).experiments.values():
            for config in experiment.run_configs():
                assert isinstance(config, RunConfig)  # validated
            decoded, warnings = from_query(to_query(experiment), experiment)
            assert warnings == []
            assert decoded.problem == experiment.problem
            assert [r.rule for r in decoded.rules] == [r.rule for r in experiment.rules]
            # the whole link, the record plan included (the Compare page has its
            # widgets now: a tour link keeps its log-spaced record)
            assert to_query(decoded) == to_query(experiment)
            assert decoded.settings == experiment.settings


def _saved_preset_links() -> dict[tuple[str, str, str], dict[str, str]]:
    """(preset, size, experiment label) -> the query the app wrote for it."""
    links = {}
    for link in LINKS:
        if link["name"].startswith("preset "):
            where, label = link["name"].removeprefix("preset ").split(": ", 1)
            key, size = where.split(" ")
            links[key, size, label] = link["query"]
    return links


def test_experiments_are_the_ones_the_app_linked_to_before():
    """Declaring a preset's problem once changed no experiment (nor its link)."""
    links = _saved_preset_links()
    record = ("record_steps", "record_log")
    seen = set()
    for key, preset in PRESETS.items():
        for size in SIZES:
            for label, experiment in preset.setup(size).experiments.items():
                seen.add((key, size, label))
                query = links[key, size, label]
                written = to_query(experiment)
                assert {k: v for k, v in written.items() if k not in record} == {
                    k: v for k, v in query.items() if k not in record
                }, (key, size, label)
                for name in record:  # the codec may leave these out
                    value = str(getattr(experiment.settings, name)).lower()
                    assert query.get(name, value) == value, (key, size, name)
    assert seen == set(links)


def test_measure_computes_and_draw_only_draws():
    preset = PRESETS["c3_ef_stall"]
    setup = preset.setup("small")
    measured = preset.measure(setup)

    def leaves(value):
        if isinstance(value, dict):
            for item in value.values():
                yield from leaves(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                yield from leaves(item)
        else:
            yield value

    assert not any(isinstance(v, go.Figure) for v in leaves(dict(measured.data)))
    first, again = preset.draw(setup, measured), preset.draw(setup, measured)
    assert list(first) == list(preset.figures)
    assert [f.to_json() for f in first.values()] == [
        f.to_json() for f in again.values()
    ]


def test_an_experiment_overrides_only_the_options_it_names():
    setups = PRESETS["c4_smooth_reparameterization"].setup("small")
    sigma, log_sigma = setups.experiments.values()
    assert log_sigma.problem_options == {
        **setups.problem_options,
        "parameterization": "log_sigma",
    }
    assert sigma.problem_options["parameterization"] == "sigma"
    assert sigma.problem == log_sigma.problem == setups.problem


def test_a_catalog_refuses_texts_and_presets_that_do_not_pair():
    texts = """
    ## One is one
    `c0_one` · C0

    One equals one. Always.

    $$ 1 = 1 $$

    Reference: arithmetic
    """
    catalog = Catalog(texts)
    assert catalog.texts["c0_one"]["claim"] == "C0"
    with pytest.raises(ValueError, match="texts without a preset"):
        list(catalog)
    study = Study("a figure")
    with pytest.raises(ValueError, match="lacks a measure or a draw"):
        catalog.add("c0_one", study, problem=None)
    with pytest.raises(ValueError, match="no texts"):
        catalog.add("c0_two", study, problem=None)
    with pytest.raises(ValueError, match="must read"):
        Catalog(texts.replace("$$ 1 = 1 $$", "1 = 1"))


def test_unknown_size_and_key_are_refused():
    with pytest.raises(ValueError, match="size"):
        PRESETS["c1_fisher_equals_ggn"].setup("huge")
    with pytest.raises(ValueError, match="preset"):
        run_check("no_such_claim")


# ------------------------------------------------------ the checks can fail
def test_measurement_bounds_and_badge():
    ok = Measurement("max |F − G|", 4.4e-16, high=1e-12)
    bad = Measurement("slope", -0.2, low=-0.65, high=-0.35)
    assert ok.passed and not bad.passed
    assert ok.text() == "max |F − G| = 4.4e-16 ≤ 1e-12 ✓"
    assert bad.text() == "slope = -0.2 in [-0.65, -0.35] ✗"
    assert not Measurement("x", math.nan, high=1.0).passed
    result = CheckResult("demo", "small", (ok, bad))
    assert not result.passed
    assert "slope = -0.2" in result.failure_message()
    assert "max |F" not in result.failure_message()
    assert not CheckResult("empty", "small", ()).passed
    assert format_number(1e-12) == "1e-12"


def test_a_matching_check_fails_on_a_non_matching_loss():
    """Swapping in a non-matching likelihood must break C1's first measurement."""
    preset = PRESETS["c1_fisher_equals_ggn"]
    setup = preset.setup("small")
    wrong = dict(setup.params)
    wrong["matching"] = {"tanh mean": ("linreg_2d", {"loss": "gaussian_tanh_mean"})}
    measured = preset.measure(dataclasses.replace(setup, params=wrong))
    first = measured.measurements[0]
    assert not first.passed, first.text()
    assert first.value > 0.1


def test_kfac_check_fails_for_deep_networks():
    """C7's exactness bound is a real bound: depth 2 violates it."""
    preset = PRESETS["c7_kfac_depth"]
    setup = preset.setup("small")
    params = {**setup.params, "depths": (2, 3)}
    measured = preset.measure(dataclasses.replace(setup, params=params))
    assert not measured.measurements[0].passed


# --------------------------------------------------- independent references
def test_fisher_by_expectation_matches_closed_forms():
    for key, options in [
        ("gaussian_fit", {"num_samples": 10}),
        ("gaussian_fit", {"num_samples": 10, "parameterization": "log_sigma"}),
        ("tiny_tanh", {"num_samples": 10, "loss": "gaussian_tanh_mean"}),
        ("moons_mlp", {"hidden": (3,), "num_samples": 16}),
    ]:
        prob = problem(key, **options)
        reference = fisher_by_expectation(prob, prob.theta0)
        fisher = curvature("fisher", prob, prob.theta0).dense()
        assert torch.allclose(reference, fisher, atol=1e-12, rtol=1e-10), key


def test_residual_term_vanishes_for_linear_models():
    prob = problem("linreg_2d", num_samples=20)
    assert residual_term(prob, prob.theta0).abs().max() == 0


def test_reparameterized_problem_has_the_same_loss():
    prob = problem("logreg_2d", num_samples=30)
    matrix = torch.tensor([[2.0, 1.0], [0.0, 0.5]], dtype=torch.float64)
    offset = torch.tensor([0.3, -0.2], dtype=torch.float64)
    moved = reparameterized(prob, matrix, offset)
    phi = torch.tensor([0.7, -1.1], dtype=torch.float64)
    assert torch.allclose(
        moved.objective(phi), prob.objective(matrix @ phi + offset), atol=1e-14
    )
    assert torch.allclose(matrix @ moved.theta0 + offset, prob.theta0)


def test_run_preset_returns_the_listed_figures():
    result = run_preset("c7_kfac_exact", "small")
    assert list(result.figures) == list(PRESETS["c7_kfac_exact"].figures)
    assert result.check.passed, result.check.failure_message()
