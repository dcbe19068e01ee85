"""History: the frame contract, exact JSON round trips and the trajectory rule."""

import itertools
import json
import math

import pytest
import torch

import explorer as ex
from explorer.runs.history import (
    COLUMNS,
    History,
    histories_from_json,
    histories_to_json,
    trajectory_plan,
)

FRAME_COLUMNS = [
    "step", "loss", "test_loss", "accuracy", "test_accuracy", "averaged_loss",
    "grad_norm", "update_norm", "damping", "rho", "alpha", "wall_time",
    "grad_evals", "curvature_products", "examples", "excess_loss", "indefinite",
]  # fmt: skip


@pytest.fixture(scope="module")
def histories():
    return ex.compare(
        "moons_mlp",
        ["sgd", "kfac", {"rule": "sgd", "rule_options": {"lr": 0.5}, "label": "fast"}],
        problem_options={"num_samples": 60, "hidden": (3,)},
        steps=4,
        averaging="uniform",
        device="cpu",
    )


def test_frame_has_exactly_the_agreed_columns(histories):
    frame = histories["kfac"].to_frame()
    assert list(frame.columns) == FRAME_COLUMNS == list(COLUMNS)
    assert frame.step.tolist() == [0, 1, 2, 3, 4]
    assert str(frame.step.dtype) == "int64"
    filled = ["loss", "test_loss", "accuracy", "test_accuracy", "averaged_loss",
              "damping", "rho", "alpha"]  # fmt: skip
    assert frame.loc[1:, filled].notna().all().all()
    assert histories["fast"].label == "fast" and histories["fast"].rule == "sgd"


def test_json_round_trip_is_exact(histories):
    for history in histories.values():
        text = history.to_json()
        json.loads(text)  # standard JSON: no NaN literals
        back = History.from_json(text)
        assert back.same_as(history, ignore=())
        assert back.config == history.config
        assert back.trajectory.dtype == torch.float64
        assert back.to_json() == text


def test_non_finite_values_survive_the_round_trip(histories):
    history = histories["sgd"]
    metrics = {name: list(values) for name, values in history.metrics.items()}
    metrics["rho"][1:4] = [math.inf, -math.inf, math.nan]
    odd = History(history.config, "sgd", "odd", "diverged", "why", metrics,
                  history.trajectory, history.trajectory_steps)  # fmt: skip
    back = History.from_json(odd.to_json())
    assert back.column("rho")[1] == math.inf
    assert back.column("rho")[2] == -math.inf
    assert math.isnan(back.column("rho")[3])
    assert back.status == "diverged" and back.message == "why"


def test_several_histories_save_and_load(histories, tmp_path):
    path = ex.save_histories(histories, tmp_path / "runs.json")
    loaded = ex.load_histories(path)
    assert list(loaded) == list(histories)
    for label, history in histories.items():
        assert loaded[label].same_as(history, ignore=())
    document = json.loads(path.read_text())
    assert document["format"] == "curvature-explorer/runs"
    assert document["runs"][2]["config"]["rule_options"] == {"lr": 0.5}
    single = histories_from_json(histories["sgd"].to_json())
    assert list(single) == ["sgd"]
    assert histories_from_json(histories_to_json(list(histories.values()))).keys() == (
        histories.keys()
    )
    with pytest.raises(ValueError, match="not a runs file"):
        histories_from_json('{"format": "something else"}')


def test_history_validates_its_fields(histories):
    history = histories["sgd"]
    with pytest.raises(ValueError, match="status"):
        History(history.config, "sgd", "x", status="exploded")
    with pytest.raises(ValueError, match="lack the columns"):
        History(history.config, "sgd", "x", metrics={"loss": [1.0]})
    with pytest.raises(ValueError, match="trajectory"):
        History(history.config, "sgd", "x", trajectory=torch.zeros(3, 2),
                trajectory_steps=[0])  # fmt: skip
    empty = History(history.config, "sgd", "x")
    assert len(empty) == 0 and math.isnan(empty.last("loss"))
    with pytest.raises(ValueError, match="unknown history column"):
        history.column("los")


def test_trajectory_plan():
    assert trajectory_plan(3, 5) == [0, 1, 2, 3]
    # 301,066 parameters (the 64-512-512-10 MLP) over 1,000 steps: 16 rows fit
    plan = trajectory_plan(1000, 301_066)
    assert len(plan) == 16 and plan[0] == 0 and plan[-1] == 1000
    gaps = {b - a for a, b in itertools.pairwise(plan)}
    assert gaps <= {66, 67}
    assert trajectory_plan(10, 10_000_000) == [0, 10]  # never fewer than two
    with pytest.raises(ValueError):
        trajectory_plan(-1, 3)


def test_same_as_is_exact_unless_given_a_relative_tolerance(histories):
    history = histories["sgd"]
    metrics = {name: list(values) for name, values in history.metrics.items()}
    metrics["loss"][2] *= 1 + 1e-14  # one rounding-level change

    def with_(metrics, trajectory):
        return History(history.config, "sgd", history.label, history.status,
                       history.message, metrics, trajectory,
                       history.trajectory_steps)  # fmt: skip

    nudged = with_(metrics, history.trajectory)
    assert not nudged.same_as(history)
    assert nudged.same_as(history, rtol=1e-12)
    assert not nudged.same_as(history, rtol=1e-15)
    moved = with_(history.metrics, history.trajectory * (1 + 1e-13))
    assert not moved.same_as(history) and moved.same_as(history, rtol=1e-12)
    nan_rho = {name: list(values) for name, values in history.metrics.items()}
    nan_rho["rho"][1] = math.nan
    assert with_(nan_rho, history.trajectory).same_as(
        with_(nan_rho, history.trajectory)
    )
