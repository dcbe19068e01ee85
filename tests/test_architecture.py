"""Structural rules from ARCHITECTURE.md that a test can enforce."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ROOT / "explorer"


def _library_files():
    return [
        path
        for path in LIBRARY.rglob("*.py")
        if "ui" not in path.relative_to(LIBRARY).parts
    ]


def test_only_the_ui_package_imports_streamlit():
    offenders = [
        str(path.relative_to(ROOT))
        for path in _library_files()
        if re.search(
            r"^\s*(import|from)\s+streamlit", path.read_text(encoding="utf-8"), re.M
        )
    ]
    assert offenders == []


def test_no_hidden_global_state_in_the_library():
    pattern = re.compile(
        r"torch\.(manual_seed|set_default_dtype|set_default_device)\(|np\.random\.seed\("
    )
    offenders = [
        str(path.relative_to(ROOT))
        for path in _library_files()
        if pattern.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


def test_public_api_names():
    import explorer as ex

    for name in (
        "problem",
        "curvature",
        "PROBLEMS",
        "CURVATURES",
        "register_curvature",
    ):
        assert hasattr(ex, name)
    p = ex.problem("moons_mlp")
    for attribute in ("model", "inputs", "targets", "theta0", "objective"):
        assert hasattr(p, attribute)
    assert p.loss.torch_loss() is not None
