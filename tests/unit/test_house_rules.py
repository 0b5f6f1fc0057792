"""The layering rules the code relies on, checked on the source itself.

``embedviz/`` is a pure library (no Streamlit); ``pages/`` and ``ui/`` do no numerical work
(no numpy, scikit-learn, SciPy, openTSNE, UMAP or torch); pages stay short enough to read.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NUMERICAL = {"numpy", "sklearn", "scipy", "openTSNE", "umap", "torch", "transformers", "pynndescent"}
MAX_PAGE_LINES = 300


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _sources(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _sources("pages", "ui"), ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_and_ui_do_no_numerical_work(path: Path) -> None:
    assert not (_imported_modules(path) & NUMERICAL), f"{path.relative_to(ROOT)} imports a numerical library"


@pytest.mark.parametrize("path", _sources("embedviz"), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_library_never_imports_streamlit(path: Path) -> None:
    assert "streamlit" not in _imported_modules(path), f"{path.relative_to(ROOT)} imports streamlit"


@pytest.mark.parametrize("path", _sources("pages") + [ROOT / "streamlit_app.py"], ids=lambda p: p.name)
def test_pages_stay_short(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_PAGE_LINES, f"{path.name} has {lines} lines (at most {MAX_PAGE_LINES})"


def test_the_checker_sees_an_import_it_must_refuse(tmp_path: Path) -> None:
    """The rule above is only worth something if the parser really finds nested and aliased imports."""
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    import numpy as np\n    from sklearn.metrics import pairwise\n", encoding="utf-8")
    assert {"numpy", "sklearn"} <= _imported_modules(bad)
