"""A check CI can trust: a plugin that hangs at import or in its matvec, crashes the
interpreter or does not import fails with a verdict naming it, under a time limit,
and the other plugins are still checked (issue 16).

The command runs in a subprocess with a hard ``timeout=``: were the time limit
broken, the test would fail on ``TimeoutExpired`` instead of hanging the suite.
"""

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
#: The smallest battery: one problem, two steps, no race, no float32 rerun.
TINY = [
    "--problems", "linreg_2d", "--steps", "2", "--points", "2", "--no-race",
    "--no-precision", "--baselines", "none", "--quiet",
]  # fmt: skip

GOOD = """
import explorer as ex

print("a plugin that prints at import")  # must not break the JSON on stdout

@ex.register_curvature("t_good", reference="fisher", psd=True)
def good(problem, theta, batch=None):
    return ex.curvature("fisher", problem, theta, batch=batch).dense()
"""
LOOP_AT_IMPORT = "while True:\n    pass\n"
HANGING_MATVEC = """
import time
import explorer as ex

@ex.register_curvature("t_hang", reference="fisher")
class Hang(ex.CurvatureOperator):
    def _matvec(self, v):
        time.sleep(3600)
        return v
"""
PLUGINS = {
    "a_good.py": GOOD,
    "b_loop.py": LOOP_AT_IMPORT,
    "c_hang.py": HANGING_MATVEC,
    "d_syntax.py": "def broken(:\n",
    "e_import.py": "import no_such_module_for_explorer_tests\n",
    "f_exit.py": "import os\nos._exit(3)\n",  # takes the interpreter down
}


def _check(*argv: str, limit: float = 240.0) -> tuple[int, dict, str, float]:
    """Runs ``python -m explorer check`` in a subprocess: (code, JSON, stderr, s)."""
    env = {k: v for k, v in os.environ.items() if k != "EXPLORER_PLUGINS"}
    env.update(PYTHONPATH=str(ROOT), EXPLORER_DASK_SCHEDULER="inprocess")
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "explorer", "check", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=limit,  # the time limit failing shows up here, not as a hung suite
    )
    seconds = time.monotonic() - start
    data = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, data, done.stderr, seconds


@pytest.mark.slow
def test_a_plugin_that_loops_at_import_times_out_with_a_verdict(tmp_path):
    plugin = tmp_path / "forever.py"
    plugin.write_text(LOOP_AT_IMPORT, encoding="utf-8")
    code, data, err, seconds = _check(str(plugin), "--timeout", "3", *TINY)
    assert code == 1, err
    line = f"FAIL  plugin {plugin}: timed out after 3 s while importing the plugin"
    assert line in err, err
    (source,) = data["sources"]
    assert source["status"] == "timed out" and "timed out after 3 s" in source["error"]
    assert data["passed"] is False and data["exit_code"] == 1
    # 3 s of plugin time, plus starting Python and torch twice (a loaded machine)
    assert seconds < 60, f"the check took {seconds:.0f} s"


@pytest.mark.slow
def test_a_folder_with_broken_plugins_checks_the_others(tmp_path):
    for name, text in PLUGINS.items():
        (tmp_path / name).write_text(textwrap.dedent(text), encoding="utf-8")
    code, data, err, seconds = _check(str(tmp_path), "--timeout", "8", *TINY)
    assert code == 1, err
    # the good plugin was checked in full, and passed; its print went to stderr
    assert "a plugin that prints at import" in err
    assert "PASS  t_good (t_good) vs fisher" in err, err
    assert data["curvatures"]["t_good"]["passed"] is True
    expected = {
        "b_loop.py": ("timed out", "timed out after 8 s while importing the plugin"),
        "c_hang.py": ("timed out", "timed out after 8 s while checking t_hang"),
        "d_syntax.py": ("failed", "SyntaxError"),
        "e_import.py": ("failed", "No module named 'no_such_module_for_explorer"),
        "f_exit.py": ("failed", "the check process died"),
    }
    sources = {Path(s["source"]).name: s for s in data["sources"]}
    assert sources["a_good.py"]["status"] == "ok" and not sources["a_good.py"]["error"]
    for name, (status, text) in expected.items():
        source = sources[name]
        assert source["status"] == status and text in source["error"], source
        assert f"FAIL  plugin {tmp_path / name}: " in err, (name, err)
    # the hung matvec says where it hung
    assert "last step: linreg_2d: t_hang at step 0" in sources["c_hang.py"]["error"]
    assert "t_hang" not in data["curvatures"]  # no verdicts from a killed battery
    assert seconds < 120, f"the check took {seconds:.0f} s"


def test_check_isolated_validates_before_starting_anything(tmp_path):
    from explorer.check.isolation import check_isolated

    with pytest.raises(ValueError, match="does not exist"):
        check_isolated([tmp_path / "missing.py"])
    with pytest.raises(ValueError, match="timeout 0"):
        check_isolated(keys=["kfac"], timeout=0)
    with pytest.raises(ValueError, match="pass a plugin file"):
        check_isolated()


def test_the_child_does_not_rerun_the_callers_main_module(tmp_path, monkeypatch):
    """A caller whose ``__main__`` is a script without a main guard (or a Streamlit
    page run in this process, as the app tests do) must not have that script
    re-run in each child: it crashed the child before the check began (CI, stop 22).
    """
    import types

    from explorer.check.isolation import check_isolated
    from explorer.check.settings import CheckSettings

    script = tmp_path / "caller.py"
    script.write_text("raise RuntimeError('the caller script ran again')\n")
    caller = types.ModuleType("__main__")
    caller.__file__ = str(script)
    monkeypatch.setitem(sys.modules, "__main__", caller)
    plugin = tmp_path / "good.py"
    plugin.write_text(textwrap.dedent(GOOD), encoding="utf-8")
    settings = CheckSettings(problems=("linreg_2d",), steps=2, race=False)
    report = check_isolated([plugin], settings=settings, timeout=120)
    assert [s["status"] for s in report.sources] == ["ok"], report.sources
    assert [c.key for c in report.curvatures] == ["t_good"]
    assert sys.modules["__main__"] is caller  # put back after the launch
