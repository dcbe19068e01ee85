"""The server's limits and engine settings, read from the environment."""

from __future__ import annotations

import pytest

from explorer.server.engine import EngineSettings, EngineUnavailable
from explorer.server.limits import ENVIRONMENT, Limits


def test_limits_come_from_the_environment_and_default_otherwise():
    limits = Limits.from_environment(
        {"EXPLORER_MAX_STEPS": "100", "EXPLORER_JOB_SECONDS": "2.5"}
    )
    assert limits.max_steps == 100 and isinstance(limits.max_steps, int)
    assert limits.job_seconds == 2.5
    assert limits.max_rules == Limits().max_rules
    assert set(ENVIRONMENT) == set(Limits.__dataclass_fields__)


@pytest.mark.parametrize("text", ["lots", "-1", "0"])
def test_a_bad_limit_names_its_variable(text):
    with pytest.raises(ValueError, match="EXPLORER_MAX_RULES"):
        Limits.from_environment({"EXPLORER_MAX_RULES": text})


def test_refusals_name_the_limit_and_what_to_change():
    limits = Limits(max_steps=1000, max_steps_x_p=1e6, max_rules=3, max_dense_p=50)
    assert limits.run_refusal(1000, 1000) is None  # exactly at the limits
    text = limits.run_refusal(1000, 1001)
    assert "1,000 × 1,001 = 1e+06" in text and "EXPLORER_MAX_STEPS_X_P" in text
    assert "EXPLORER_MAX_STEPS)" in limits.run_refusal(1001, 1)
    assert "4 optimizers" in limits.comparison_refusal(4, 10)
    assert limits.comparison_refusal(3, 1000) is None
    assert "EXPLORER_MAX_DENSE_P" in limits.dense_refusal(51)
    assert limits.dense_refusal(50) is None


def test_large_links_wait_for_run():
    limits = Limits(autostart_steps=5000)
    assert limits.needs_confirmation(1000, 5) is None
    text = limits.needs_confirmation(10_000_000, 1)
    assert "10,000,000" in text and "Run" in text


def test_engine_settings_from_the_environment():
    assert EngineSettings.from_environment({}).scheduler == "local"
    settings = EngineSettings.from_environment(
        {
            "EXPLORER_DASK_SCHEDULER": "tcp://10.0.0.5:8786",
            "EXPLORER_DASK_WORKERS": "3",
            "EXPLORER_DASK_FALLBACK": "local",
        }
    )
    assert (settings.scheduler, settings.workers, settings.fallback_local) == (
        "tcp://10.0.0.5:8786",
        3,
        True,
    )
    with pytest.raises(EngineUnavailable, match="EXPLORER_DASK_SCHEDULER"):
        EngineSettings.from_environment({"EXPLORER_DASK_SCHEDULER": "somewhere"})
    with pytest.raises(EngineUnavailable, match="EXPLORER_DASK_WORKERS"):
        EngineSettings.from_environment({"EXPLORER_DASK_WORKERS": "0"})


def test_an_edited_plugin_changes_the_cache_fingerprint(tmp_path):
    from explorer.server.engine import source_fingerprint
    from explorer.server.tasks import PluginSources

    (tmp_path / "mine.py").write_text("A = 1\n")
    sources = PluginSources(folder=str(tmp_path))
    before = source_fingerprint(sources)
    assert source_fingerprint(sources) == before
    (tmp_path / "mine.py").write_text("A = 2\n")
    assert source_fingerprint(sources) != before
    assert source_fingerprint(None) != before


# ------------------------------------------- ceilings on size (issue 16, "Safe")
def test_a_model_above_the_parameter_limit_is_refused_by_name():
    from explorer.problems.spec import estimate_num_params

    limits = Limits()  # the defaults a server starts with
    four_wide = estimate_num_params("digits_mlp", {"hidden": (4096,) * 4})
    assert four_wide == 64 * 4096 + 4096 + 3 * (4096 * 4096 + 4096) + 4096 * 10 + 10
    text = limits.problem_refusal(four_wide)
    assert text and "EXPLORER_MAX_PARAMS" in text and f"{four_wide:,}" in text
    assert limits.problem_refusal(2410) is None
    assert limits.problem_refusal(None) is None  # a plugin that declares no count
    assert "EXPLORER_MAX_PARAMS" in limits.run_refusal(10, four_wide)


def test_a_fine_landscape_on_a_large_model_is_refused_before_the_grid():
    limits = Limits()
    text = limits.grid_refusal(201, 85_000)  # the 27.5 GB request of the issue
    assert "EXPLORER_MAX_GRID_X_P" in text and "201 × 201" in text
    assert "to 17 or less" in text  # 17² · 85,000 fits, 18² · 85,000 does not
    assert limits.grid_refusal(17, 85_000) is None
    assert limits.grid_refusal(18, 85_000) is not None
    assert limits.grid_refusal(201, 2) is None  # exact contours of a 2-D toy
    assert limits.grid_refusal(101, 2410) is None  # the digits MLP's planes


def test_the_run_estimate_counts_history_and_is_refused_above_the_memory_limit():
    from explorer.runs.history import COLUMNS
    from explorer.server.limits import estimate_run

    small = estimate_run(2410, 50, 1438)
    # 8 working vectors, 51 rows of metrics and the 51-point trajectory
    assert small.memory_bytes == 8 * 2410 * 8 + 51 * len(COLUMNS) * 32 + 51 * 2410 * 8
    assert 0 < small.seconds < 10
    huge = estimate_run(2, 10_000_000, 1000)  # 10 M steps: gigabytes of metrics
    assert huge.memory_bytes > 5 * 2**30
    # recording 100 rows leaves the thinned trajectory: 2.5 M points of P = 2
    thinned = estimate_run(2, 10_000_000, 1000, record_steps=100)
    assert thinned.memory_bytes < 48 * 2**20
    curvature = estimate_run(2410, 50, 1438, curvature=True)
    assert curvature.seconds > small.seconds
    limits = Limits(max_steps=10**8, max_steps_x_p=1e12)
    text = limits.run_refusal(10_000_000, 2, huge)
    assert "EXPLORER_MAX_RUN_MB" in text and "GiB" in text
    assert limits.run_refusal(50, 2410, small) is None


def test_new_limits_are_read_from_the_environment():
    limits = Limits.from_environment(
        {
            "EXPLORER_MAX_PARAMS": "5000",
            "EXPLORER_MAX_RUN_MB": "64",
            "EXPLORER_MAX_GRID_X_P": "1e6",
            "EXPLORER_LEASE_SECONDS": "30",
        }
    )
    assert (limits.max_params, limits.max_run_mb) == (5000, 64.0)
    assert (limits.max_grid_x_p, limits.lease_seconds) == (1e6, 30.0)
