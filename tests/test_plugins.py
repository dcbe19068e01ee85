"""Plugin loading: files, folders, the environment, entry points, and failures."""

import textwrap
from importlib import metadata

import pytest
import torch

import explorer as ex
from explorer import plugins
from explorer.curvature import Tags

GOOD = """
import torch
import explorer as ex

@ex.register_curvature("{key}", label="Scaled identity", reference="fisher", psd=True)
def scaled_identity(problem, theta, batch=None):
    return 2.0 * torch.eye(problem.num_params, dtype=theta.dtype)
"""


@pytest.fixture
def plugin_dir(tmp_path):
    yield tmp_path
    for key in [k for k, spec in ex.CURVATURES.items() if str(tmp_path) in spec.source]:
        ex.CURVATURES.unregister(key)


def _write(folder, name, text):
    path = folder / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_a_plugin_file_registers_a_usable_curvature(plugin_dir):
    path = _write(plugin_dir, "good.py", GOOD.format(key="test_identity"))
    report = plugins.load_plugin_file(path)
    assert report.ok and report.keys == ("test_identity",)
    assert ex.CURVATURES["test_identity"].source == str(path.resolve())
    problem = ex.problem("linreg_2d")
    operator = ex.curvature("test_identity", problem, problem.theta0)
    b = torch.tensor([2.0, 4.0], dtype=torch.float64)
    assert torch.allclose(operator.solve(b, damping=0.0), b / 2)
    # psd=True is a declared tag: the spec and the instance say the same
    spec = ex.CURVATURES["test_identity"]
    assert spec.psd and not spec.exact
    assert operator.tags == spec.tags(problem) == Tags(psd=True)
    assert operator.psd and not operator.exact
    # loading the same file again replaces, never clashes
    again = plugins.load_plugin_file(path)
    assert again.ok and again.keys == ("test_identity",)


def test_broken_plugins_give_reports_not_exceptions(plugin_dir):
    syntax = _write(plugin_dir, "syntax.py", "def broken(:\n")
    raises = _write(plugin_dir, "raises.py", "raise RuntimeError('plugin exploded')\n")
    clash = _write(plugin_dir, "clash.py", GOOD.format(key="ggn"))
    missing = plugin_dir / "missing.py"
    reports = {
        r.source.rsplit("/", 1)[-1]: r
        for r in plugins.load_plugins(
            [syntax, raises, clash, missing],
            use_environment=False,
            use_entry_points=False,
        )
    }
    assert "SyntaxError" in reports["syntax.py"].error
    assert "plugin exploded" in reports["raises.py"].error
    assert "already registered" in reports["clash.py"].error
    assert "not a Python file" in reports["missing.py"].error
    assert "FAILED" in reports["raises.py"].summary()
    assert ex.CURVATURES["ggn"].source == "builtin"


def test_partial_registration_is_rolled_back(plugin_dir):
    text = GOOD.format(key="test_partial") + "\nraise ValueError('after registering')\n"
    report = plugins.load_plugin_file(_write(plugin_dir, "partial.py", text))
    assert not report.ok
    assert "test_partial" not in ex.CURVATURES


def test_folder_and_environment_variable(plugin_dir, monkeypatch):
    folder = plugin_dir / "plugins"
    folder.mkdir()
    _write(folder, "one.py", GOOD.format(key="test_one"))
    _write(folder, "_private.py", "raise SystemExit('must be skipped')\n")
    other = _write(plugin_dir, "two.py", GOOD.format(key="test_two"))
    monkeypatch.setenv(plugins.ENV_VARIABLE, str(other))
    reports = plugins.load_plugins(folder=folder, use_entry_points=False)
    assert [r.keys for r in reports] == [("test_one",), ("test_two",)]


def test_entry_points(plugin_dir, monkeypatch):
    module_path = _write(
        plugin_dir,
        "entry_plugin.py",
        """
        import torch
        from explorer.curvature.base import CurvatureOperator

        class HalfIdentity(CurvatureOperator):
            psd = True
            def _matvec(self, v):
                return 0.5 * v
    """,
    )
    monkeypatch.syspath_prepend(str(plugin_dir))
    entry = metadata.EntryPoint(
        name="test_half",
        value="entry_plugin:HalfIdentity",
        group=plugins.ENTRY_POINT_GROUP,
    )
    monkeypatch.setattr(plugins.metadata, "entry_points", lambda group: [entry])
    reports = plugins.load_entry_points()
    assert reports[0].ok and reports[0].keys == ("test_half",)
    problem = ex.problem("linreg_2d")
    operator = ex.curvature("test_half", problem, problem.theta0)
    assert torch.equal(operator.diag(), torch.full((2,), 0.5, dtype=torch.float64))
    # the class attribute `psd = True` is folded into the declared tags
    assert operator.psd and ex.CURVATURES["test_half"].tags(problem).psd
    ex.CURVATURES.unregister("test_half")
    del module_path


def test_plugin_results_are_validated_at_use(plugin_dir):
    text = """
        import torch
        import explorer as ex

        @ex.register_curvature("test_bad_shape")
        def bad_shape(problem, theta, batch=None):
            return torch.eye(problem.num_params + 1, dtype=theta.dtype)

        @ex.register_curvature("test_nan")
        def nan(problem, theta, batch=None):
            return torch.full((problem.num_params,) * 2, float("nan"), dtype=theta.dtype)
    """
    assert plugins.load_plugin_file(_write(plugin_dir, "bad.py", text)).ok
    problem = ex.problem("linreg_2d")
    with pytest.raises(ValueError, match=r"shape \(3, 3\); expected \(2, 2\)"):
        ex.curvature("test_bad_shape", problem, problem.theta0)
    with pytest.raises(ValueError, match="NaN"):
        ex.curvature("test_nan", problem, problem.theta0)


def test_declarations_of_a_plugin_reach_the_spec_and_the_instance(plugin_dir):
    text = """
        import torch
        import explorer as ex
        from explorer.curvature import MLP, Tags

        @ex.register_curvature(
            "test_diag_identity", tags=Tags(psd=True, diagonal=True), needs=(MLP,)
        )
        def diag_identity(problem, theta, batch=None):
            return torch.eye(problem.num_params, dtype=theta.dtype)

        class Scaled(ex.CurvatureOperator):
            def _matvec(self, v):
                return 3.0 * v

        ex.register_curvature("test_scaled", psd=True, exact=True)(Scaled)
    """
    assert plugins.load_plugin_file(_write(plugin_dir, "declared.py", text)).ok
    moons = ex.problem("moons_mlp", num_samples=20, hidden=(3,))
    spec = ex.CURVATURES["test_diag_identity"]
    operator = ex.curvature("test_diag_identity", moons, moons.theta0)
    assert operator.tags == spec.tags(moons) == Tags(psd=True, diagonal=True)
    assert operator.has_closed_form_solve  # declared diagonal: solved by division
    b = torch.arange(1.0, moons.num_params + 1, dtype=torch.float64)
    assert torch.allclose(operator.solve(b, 1.0), b / 2)
    rosenbrock = ex.problem("rosenbrock")
    reason = spec.incompatibility(rosenbrock)
    assert reason is not None and "nn.Linear" in reason
    with pytest.raises(ValueError, match="nn.Linear"):
        ex.curvature("test_diag_identity", rosenbrock, rosenbrock.theta0)
    assert (
        ex.RULES["precondition"].incompatibility(
            rosenbrock, {"curvature": "test_diag_identity"}
        )
        == reason
    )
    scaled = ex.CURVATURES["test_scaled"]
    assert scaled.tags() == Tags(psd=True, exact=True)
    assert ex.curvature("test_scaled", rosenbrock, rosenbrock.theta0).exact
    with pytest.raises(ValueError, match="contradict"):
        ex.register_curvature("test_contradiction", psd=True, tags=Tags())(
            lambda problem, theta, batch=None: None
        )
