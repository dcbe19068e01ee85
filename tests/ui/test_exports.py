"""The Compare page's downloads: ``reproduce.py`` runs from anywhere the package is
installed and prints the app's numbers; the HTML report names what was run and links
back to the app with a query that restores the experiment.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
from html.parser import HTMLParser
from pathlib import Path

import plotly.graph_objects as go
import pytest

import explorer as ex
from explorer.runs import Experiment, RuleChoice
from explorer.runs.experiment import DEFAULT_EXPERIMENT
from explorer.ui import exports
from explorer.ui.urlstate import from_query

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = Experiment(
    "logreg_2d",
    {"num_samples": 200},
    (
        RuleChoice("sgd", {"lr": 0.5}),
        RuleChoice("kfac"),
        RuleChoice("sgd", {"lr": 0.05}, label="sgd slow"),
    ),
    {"steps": 4, "seed": 2, "batch_size": 50},
)
LINE = re.compile(
    r"^\s*(?P<label>.+?)\s{2,}(?P<status>\S+)\s{2,}final loss (?P<loss>\S+)$"
)


# ------------------------------------------------------------------ helpers
def _run_script(script: str, folder: Path, pythonpath: str | None, *flags: str):
    """Runs ``script`` saved as ``folder/reproduce.py`` with ``folder`` as the cwd
    and exactly ``pythonpath`` (never the repository unless given).
    """
    assert not folder.resolve().is_relative_to(ROOT)
    path = folder / "reproduce.py"
    path.write_text(script, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    return subprocess.run(
        [sys.executable, *flags, str(path)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _final_losses(stdout: str) -> dict[str, tuple[str, float]]:
    found = {}
    for line in stdout.splitlines():
        match = LINE.match(line)
        if match:
            found[match["label"]] = (match["status"], float(match["loss"]))
    return found


def _build_and_install(tmp: Path) -> Path | None:
    """Installs a wheel built from a copy of the project into ``tmp/site`` (pip
    ``--target``, no dependencies); None when this Python cannot build wheels
    offline (setuptools missing or without ``bdist_wheel``).
    """
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "requirements.txt"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "explorer",
        source / "explorer",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    offline = ["--no-deps", "--no-index"]
    built = subprocess.run(
        [*pip, "wheel", *offline, "--no-build-isolation", "-w", tmp / "wheels", source],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if built.returncode != 0:
        if "bdist_wheel" in built.stderr or "setuptools" in built.stderr:
            return None
        raise AssertionError(built.stderr)
    wheels = list((tmp / "wheels").glob("curvature_explorer-*.whl"))
    assert len(wheels) == 1, wheels
    site = tmp / "site"
    subprocess.run(
        [*pip, "install", *offline, "--target", site, wheels[0]],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return site


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path | None:
    return _build_and_install(tmp_path_factory.mktemp("install"))


# --------------------------------------------------------------- packaging
@pytest.mark.slow
def test_pip_install_brings_every_module_and_the_requirements(installed):
    if installed is None:
        pytest.skip("this Python cannot build wheels offline (setuptools)")
    package = ROOT / "explorer"
    expected = {
        p.relative_to(package)
        for p in package.rglob("*.py")
        if "__pycache__" not in p.parts
    }
    got = {p.relative_to(installed / "explorer") for p in installed.rglob("*.py")}
    assert expected <= got
    metadata = next(installed.glob("curvature_explorer-*.dist-info")) / "METADATA"
    requires = [
        line.split(":", 1)[1].strip()
        for line in metadata.read_text().splitlines()
        if line.startswith("Requires-Dist:")
    ]
    assert any(r.startswith("torch") for r in requires), requires


# ------------------------------------------------------------------ script
@pytest.mark.slow
def test_script_reproduces_the_app_numbers_from_an_installed_copy(installed, tmp_path):
    """Saved outside the repository and run there, against the installed package
    (or, where wheels cannot be built, the repository on PYTHONPATH: still not the
    cwd), it prints the final losses of the app's own runs.
    """
    script = exports.python_script(EXPERIMENT)
    pythonpath = str(installed) if installed is not None else str(ROOT)
    done = _run_script(script, tmp_path, pythonpath)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    printed = _final_losses(done.stdout)
    app = {c.display_label: ex.run(c) for c in EXPERIMENT.run_configs()}
    assert list(printed) == list(app) == ["sgd", "kfac", "sgd slow"]
    for label, history in app.items():
        status, loss = printed[label]
        expected = float(history.to_frame()["loss"].iloc[-1])
        assert status == history.status
        assert math.isclose(loss, expected, rel_tol=1e-12, abs_tol=1e-12), label


def test_script_pins_one_thread_and_names_its_origin():
    script = exports.python_script(EXPERIMENT)
    origin = exports.exported_from()
    assert origin["version"] == ex.__version__
    assert re.fullmatch(r"[0-9a-f]{16}", origin["source"])
    assert origin["version"] in script and origin["source"] in script
    assert "pip install -e" in script and "curvature_explorer-" in script
    pin = script.index('os.environ["OMP_NUM_THREADS"] = "1"')
    assert pin < script.index("import torch") and pin < script.index("import explorer")
    assert "torch.set_num_threads(1)" in script
    compile(script, "reproduce.py", "exec")


def test_script_passes_the_settings_the_app_ran_with():
    assert exports.script_settings(EXPERIMENT) == {
        "steps": 4,
        "seed": 2,
        "batch_size": 50,
    }
    # digits_mlp's own default curvature batch (128) is not repeated.
    assert exports.script_settings(DEFAULT_EXPERIMENT) == {}


def test_script_without_explorer_says_how_to_install(tmp_path):
    done = _run_script(exports.python_script(EXPERIMENT), tmp_path, None, "-S")
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install" in lines[0], done.stderr
    assert "explorer" in lines[0]


def test_script_with_a_broken_install_says_what_is_missing(tmp_path):
    fake = tmp_path / "fake" / "explorer"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("import not_a_real_requirement_xyz\n")
    done = _run_script(
        exports.python_script(EXPERIMENT), tmp_path, str(fake.parent), "-S"
    )
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "not_a_real_requirement_xyz" in done.stderr
    assert "pip install" in done.stderr


# ------------------------------------------------------------------ report
class _Page(HTMLParser):
    """The header's ``<dt>``/``<dd>`` pairs, the links and the title."""

    def __init__(self) -> None:
        super().__init__()
        self.details: dict[str, str] = {}
        self.links: list[tuple[str, str]] = []
        self.title = ""
        self._tag: str | None = None
        self._href: str | None = None
        self._dt = ""
        self._text = ""

    def handle_starttag(self, tag, attrs):
        if tag in ("dt", "dd", "h1"):
            self._tag, self._text = tag, ""
        if tag == "a":
            self._href, self._text = dict(attrs).get("href"), ""

    def handle_data(self, data):
        self._text += data

    def handle_endtag(self, tag):
        if tag == "dt":
            self._dt = self._text.strip()
        elif tag == "dd":
            self.details[self._dt] = self._text.strip()
        elif tag == "h1":
            self.title = self._text.strip()
        elif tag == "a" and self._href is not None:
            self.links.append((self._text.strip(), self._href))
            self._href = None


def _parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    return parser


def _figure() -> dict[str, go.Figure]:
    return {"Loss per iteration": go.Figure(go.Scatter(x=[0, 1], y=[1.0, 0.5]))}


def test_report_header_names_the_problem_rules_and_settings():
    when = dt.datetime(2024, 5, 6, 7, 8, tzinfo=dt.UTC)
    page = _parse(exports.comparison_html(EXPERIMENT, _figure(), exported=when))
    assert "Logistic regression" in page.title
    details = page.details
    assert "logreg_2d" in details["Problem"]
    assert details["Problem options"] == "num_samples=200"
    optimizers = details["Optimizers"]
    for key in ("sgd", "kfac"):
        assert f"({key})" in optimizers
    assert "lr=0.5" in optimizers and "sgd slow: SGD (sgd); lr=0.05" in optimizers
    settings = details["Run settings"]
    for text in ("steps=4", "seed=2", "batch_size=50", "dtype=float64"):
        assert text in settings
    assert details["Exported"].startswith("2024-05-06 07:08")
    assert ex.__version__ in details["Explorer"]
    assert exports.exported_from()["source"] in details["Explorer"]


@pytest.mark.parametrize(
    ("base_url", "prefix"),
    [
        ("./", "./?"),
        ("https://class.example.org/app/?old=1#top", "https://class.example.org/app/?"),
    ],
)
def test_report_links_back_to_the_same_experiment(base_url, prefix):
    page = _parse(exports.comparison_html(EXPERIMENT, _figure(), base_url=base_url))
    [(text, href)] = page.links
    assert "app" in text and href.startswith(prefix) and "#" not in href
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(href).query))
    assert "old" not in query
    decoded, warnings = from_query(query, DEFAULT_EXPERIMENT)
    assert warnings == []
    assert decoded == EXPERIMENT


def test_report_escapes_every_text_and_the_link():
    hostile = Experiment(
        "logreg_2d",
        rules=(RuleChoice("sgd", label='<script>alert("x")</script> & co'),),
        run_options={"steps": 2},
    )
    html = exports.comparison_html(hostile, _figure(), base_url='./?a="b"<')
    header = html[: html.index("Loss per iteration")]
    assert "<script>alert" not in header and "&lt;script&gt;" in header
    page = _parse(html)
    [(_, href)] = page.links
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(href).query))
    assert from_query(query, DEFAULT_EXPERIMENT)[0] == hostile
    with pytest.raises(ValueError, match="relative, http or https"):
        exports.experiment_link(hostile, "javascript:alert(1)")


def test_report_without_an_experiment_is_the_figures_alone():
    page = _parse(exports.comparison_html(None, _figure()))
    assert page.title == "Curvature Explorer comparison"
    assert page.details == {} and page.links == []
