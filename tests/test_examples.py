"""The shipped example files stay valid."""

import dataclasses
import tomllib
from pathlib import Path

import explorer as ex

ROOT = Path(__file__).resolve().parents[1]


def test_example_run_config_is_a_valid_run():
    data = tomllib.loads((ROOT / "examples" / "run.toml").read_text(encoding="utf-8"))
    config = ex.RunConfig.from_dict(data)
    assert config.problem == "digits_mlp" and config.rule == "natural_gradient"
    history = ex.run(dataclasses.replace(config, steps=3))
    assert history.status == "ok"
    frame = history.to_frame()
    assert frame.loss.iloc[-1] < frame.loss.iloc[0]
