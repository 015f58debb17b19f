"""The engine's shape (issue 16): no function in ``dask_enrich/engine/`` longer than 80 lines, and no
side channel between tasks (``DataFrame.attrs``)."""
from __future__ import annotations

import ast
from pathlib import Path

import dask_enrich

ENGINE = Path(dask_enrich.__file__).parent / "engine"
MAX_LINES = 80


def _functions(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1


def test_no_engine_function_is_longer_than_80_lines():
    long = [f"{path.name}:{line} {name} ({length} lines)"
            for path in sorted(ENGINE.glob("*.py")) for name, line, length in _functions(path)
            if length > MAX_LINES]
    assert not long, "functions longer than 80 lines: " + ", ".join(long)


def test_the_measure_counts_a_function_s_lines_from_def_to_its_last_line(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n" + "    x = 1\n" * 80 + "\n\ndef g():\n    return 1\n")
    assert list(_functions(source)) == [("f", 1, 81), ("g", 84, 2)]


def test_no_engine_module_passes_data_in_dataframe_attrs():
    users = [path.name for path in sorted(ENGINE.glob("*.py")) if ".attrs" in path.read_text()]
    assert not users, f"DataFrame.attrs used as a side channel in {users}"
