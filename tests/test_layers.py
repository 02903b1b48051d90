"""fnd_core's layers hold, and `make lint` catches an import that breaks them.

The contracts live in pyproject.toml (``[tool.importlinter]``); `make lint` runs ``lint-imports``.
Here the same command runs on a copy of fnd_core, once as it is and once with one upward import
added, so the check is shown to fail when it should, not only to pass.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fnd_core.resources import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_MODULE_LINES = 600  # a concept in one module rather than cut in three
MAX_FUNCTION_LINES = 60  # one screen


def _copy_of_fnd_core(tmp_path: Path) -> Path:
    shutil.copytree(REPO_ROOT / "fnd_core", tmp_path / "fnd_core",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def lint_available() -> None:
    if not LINT_IMPORTS.exists():
        pytest.fail(f"{LINT_IMPORTS} missing: `make install` installs import-linter from the lock")


def test_layers_hold_on_the_code_as_it_is(lint_available, tmp_path):
    result = _lint_imports(_copy_of_fnd_core(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 4 kept, 0 broken." in result.stdout


@pytest.mark.parametrize(
    ("module", "upward"),
    [
        ("io/storage.py", "from fnd_core.stack import cli"),  # io reaching the CLI
        ("model/train/trainer.py", "from fnd_core.ingest import load"),  # siblings must not meet
        ("pipeline/gate.py", "from fnd_core.observe import drift"),  # pipeline reaching observe
    ],
)
def test_an_upward_import_breaks_make_lint(lint_available, tmp_path, module, upward):
    root = _copy_of_fnd_core(tmp_path)
    path = root / "fnd_core" / module
    path.write_text(path.read_text() + f"\n{upward}  # noqa\n")
    result = _lint_imports(root)
    assert result.returncode != 0
    importer = "fnd_core." + module.removesuffix(".py").replace("/", ".")
    package, name = upward.split()[1], upward.split()[3]
    low, high = "fnd_core." + module.split("/")[0].removesuffix(".py"), package
    assert f"{low} is not allowed to import {high}" in result.stdout, result.stdout
    assert f"{importer} -> {package}.{name}" in result.stdout, result.stdout


def test_an_import_cycle_breaks_make_lint(lint_available, tmp_path):
    root = _copy_of_fnd_core(tmp_path)
    gate = root / "fnd_core" / "pipeline" / "gate.py"
    gate.write_text(gate.read_text() + "\nfrom fnd_core.pipeline import registry  # noqa\n")
    registry = root / "fnd_core" / "pipeline" / "registry.py"
    registry.write_text(registry.read_text() + "\nfrom fnd_core.pipeline import gate  # noqa\n")
    result = _lint_imports(root)
    assert result.returncode != 0
    assert "no import cycles between sibling modules BROKEN" in result.stdout, result.stdout


def test_no_module_is_longer_than_one_read():
    """Every fnd_core module stays under MAX_MODULE_LINES lines: one concept per module."""
    lengths = {
        str(p.relative_to(REPO_ROOT)): len(p.read_text().splitlines())
        for p in (REPO_ROOT / "fnd_core").rglob("*.py")
    }
    assert {p: n for p, n in lengths.items() if n > MAX_MODULE_LINES} == {}


def test_no_function_body_is_longer_than_a_screen():
    """Function bodies (docstring aside) stay within MAX_FUNCTION_LINES lines."""
    long = {}
    for path in (REPO_ROOT / "fnd_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                first = node.body[0]
                documented = isinstance(first, ast.Expr) and isinstance(
                    getattr(first, "value", None), ast.Constant
                )
                start = first.end_lineno + 1 if documented else first.lineno
                if node.end_lineno - start + 1 > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO_ROOT)}:{node.name}"] = node.end_lineno - start + 1
    assert long == {}


def test_every_module_says_why_it_exists():
    """A module docstring in every fnd_core module (what it is for, not only what it holds)."""
    missing = [
        str(p.relative_to(REPO_ROOT))
        for p in (REPO_ROOT / "fnd_core").rglob("*.py")
        if not ast.get_docstring(ast.parse(p.read_text()))
    ]
    assert missing == []
