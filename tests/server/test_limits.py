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
