"""Hostile command lines (issue 16): a file argument that cannot be used is refused
before any work with exit code 2 and a message naming it, and an empty rule list is
an error, not the defaults."""

import os
import time

import pytest

from explorer.cli import main
from explorer.commands.paths import check_writable

#: Every command with an output flag, with the least it needs to start working.
OUTPUTS = [
    (["run", "--problem", "linreg_2d", "--steps", "1", "--quiet"], "--out"),
    (["run", "--problem", "linreg_2d", "--steps", "1", "--quiet"], "--html"),
    (["compare", "--problem", "linreg_2d", "--steps", "1", "--quiet"], "--out"),
    (["compare", "--problem", "linreg_2d", "--steps", "1", "--quiet"], "--html"),
    (["spectra", "--problem", "linreg_2d"], "--out"),
    (["spectra", "--problem", "linreg_2d"], "--html"),
    (["check", "--curvature", "kfac", "--problems", "linreg_2d", "--quiet"], "--out"),
    (["check", "--curvature", "kfac", "--problems", "linreg_2d", "--quiet"], "--json"),
    (["problems"], "--out"),
]


def _bad_outputs(tmp_path):
    """(path, what the message must say): a missing folder, a folder, and a folder
    that takes no new file (procfs refuses even root; a read-only folder too)."""
    bad = [
        (tmp_path / "no" / "such" / "out.json", "does not exist"),
        (tmp_path, "is a folder"),
        ("", "empty path"),
    ]
    if os.path.isdir("/proc"):
        bad.append(("/proc/explorer-out.json", "cannot write"))
    if os.geteuid() != 0:  # root writes into a read-only folder regardless
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        bad.append((locked / "out.json", "cannot write"))
    return bad


def _refused(capsys, argv):
    """Exit code and stderr of a command line argparse refuses."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    assert out == "", out  # nothing ran, nothing printed
    return exit_info.value.code, err


@pytest.mark.parametrize(("argv", "flag"), OUTPUTS, ids=lambda v: str(v))
def test_an_unusable_output_path_is_refused_before_the_work(
    capsys, tmp_path, argv, flag
):
    for path, reason in _bad_outputs(tmp_path):
        start = time.perf_counter()
        code, err = _refused(capsys, [*argv, flag, str(path)])
        assert code == 2, (flag, path, err)
        assert f"argument {flag}:" in err and reason in err, (path, err)
        assert str(path) in err or path == "", err
        assert "Traceback" not in err
        assert time.perf_counter() - start < 10  # refused at parsing, not after
    assert not (tmp_path / "no").exists()


def test_a_writable_path_passes_and_is_left_as_it_was(tmp_path):
    new = tmp_path / "new.json"
    assert check_writable(new) == new
    assert list(tmp_path.iterdir()) == []  # the probe file is gone
    old = tmp_path / "old.json"
    old.write_text("keep me", encoding="utf-8")
    check_writable(str(old))
    assert old.read_text(encoding="utf-8") == "keep me"


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--problem", "linreg_2d", "--steps", "1", "--quiet"],
        ["compare", "--problem", "linreg_2d", "--steps", "1", "--quiet"],
        ["problems"],
        ["bench", "--problem", "linreg_2d", "--curvature", "ggn"],
    ],
    ids=lambda v: v[0],
)
def test_a_plugin_path_that_does_not_exist_is_a_usage_error(capsys, tmp_path, argv):
    missing = tmp_path / "nowhere" / "plugin.py"
    code, err = _refused(capsys, [*argv, "--plugin", str(missing)])
    assert code == 2 and f"argument --plugin: '{missing}' does not exist" in err, err


def test_check_refuses_a_missing_plugin_and_a_bad_timeout(capsys, tmp_path):
    missing = tmp_path / "nowhere.py"
    code, err = _refused(capsys, ["check", str(missing), "--quiet"])
    assert code == 2 and f"'{missing}' does not exist" in err, err
    for bad in ("0", "-1", "nan"):
        code = main(["check", "--curvature", "kfac", "--timeout", bad, "--quiet"])
        assert code == 2 and "--timeout" in capsys.readouterr().err, bad
    code, err = _refused(capsys, ["check", "--curvature", "kfac", "--timeout", "x"])
    assert code == 2 and "--timeout" in err


@pytest.mark.parametrize("rules", ["", ",", " , "])
def test_compare_with_an_empty_rule_list_is_an_error(capsys, rules):
    code = main(["compare", "--problem", "linreg_2d", "--rules", rules, "--quiet"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", out  # not the five default rules
    assert f"--rules {rules!r} names no rule" in err, err
