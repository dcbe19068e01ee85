"""Parameter counts from options (before building) and the ceilings on options.

A server refuses a model too large for it before a byte is allocated, so every
built-in problem declares P as arithmetic on its options (``count_params``); the
count must equal the built model's P wherever we can build it.
"""

from __future__ import annotations

import pytest

import explorer as ex
from explorer.problems.spec import PROBLEMS, estimate_num_params
from explorer.runs import ProblemConfig

#: Larger configurations than the tiny cases, still quick to build.
LARGER = [
    ("digits_mlp", {"hidden": (20, 7, 3)}),
    ("digits_autoencoder", {"hidden": (9, 5)}),
    ("mnist_cnn", {"image_size": 28, "channels": (3, 5, 2, 2)}),
    ("mnist_cnn", {"architecture": "mlp", "image_size": 28, "hidden": (5, 4)}),
    ("tiny_transformer", {"num_layers": 2, "d_model": 8, "heads": 4}),
    ("heteroscedastic_1d", {"hidden": 9}),
    ("stream_logreg", {"dim": 7, "eval_size": 300}),
]


def configurations():
    for key, spec in PROBLEMS.items():
        if spec.source != "builtin":
            continue
        yield pytest.param(key, {}, id=f"{key}-defaults")
        for case in spec.test_cases:
            yield pytest.param(key, dict(case.options), id=case.name)
    for index, (key, options) in enumerate(LARGER):
        yield pytest.param(key, options, id=f"{key}-larger{index}")


@pytest.mark.parametrize(("key", "options"), list(configurations()))
def test_the_declared_count_is_the_built_models(key, options):
    assert PROBLEMS[key].count_params is not None, f"{key} declares no count"
    assert estimate_num_params(key, options) == ex.problem(key, **options).num_params


def test_the_issues_requests_are_counted_without_building():
    # 200 hidden layers of 4,096 (3.3 billion parameters): refused by the option
    with pytest.raises(ValueError, match="200 entries, more than 8"):
        ProblemConfig("digits_mlp", {"hidden": (4096,) * 200})
    with pytest.raises(ValueError, match="at most 8 integers"):
        estimate_num_params("digits_mlp", {"hidden": "4096," * 9})
    # four of them are allowed by the library (P ≈ 50 M) and counted exactly,
    # so that a server can refuse them (EXPLORER_MAX_PARAMS)
    assert estimate_num_params("digits_mlp", {"hidden": (4096,) * 4}) == 50_651_146


def test_a_streaming_evaluation_sample_has_a_ceiling():
    with pytest.raises(ValueError, match="eval_size × dim"):
        estimate_num_params("stream_logreg", {"dim": 10_000, "eval_size": 2_000_000})
    with pytest.raises(ValueError, match="eval_size × dim"):
        ex.problem("stream_logreg", dim=10_000, eval_size=2_000_000)
