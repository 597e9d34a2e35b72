"""No function in edged/ is over 60 lines, except declarative tables (issue #13)."""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterator
from pathlib import Path

import edged

LIMIT = 60
# Tables, not logic: the argument parser and the metric catalogs declare one item after another.
TABLES = ("edged.cli._parser", "edged.metrics.*.__init__")
PACKAGE = Path(edged.__path__[0])


def functions(path: Path, module: str) -> Iterator[tuple[str, int]]:
    """(qualified name, lines from `def` to its last line) of every function and method."""

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = f"{prefix}.{child.name}"
                assert child.end_lineno is not None
                yield name, child.end_lineno - child.lineno + 1
                yield from visit(child, name)
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, f"{prefix}.{child.name}")
            else:
                yield from visit(child, prefix)

    yield from visit(ast.parse(path.read_text(encoding="utf-8")), module)


def every_function() -> Iterator[tuple[str, int]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        yield from functions(path, ".".join(parts[:-1] if parts[-1] == "__init__" else parts))


def is_table(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, table) for table in TABLES)


def test_no_function_over_60_lines() -> None:
    too_long = [f"{name}: {lines} lines" for name, lines in every_function() if lines > LIMIT]
    assert [line for line in too_long if not is_table(line.partition(":")[0])] == []


def test_every_table_allowed_exists() -> None:
    names = [name for name, _ in every_function()]
    assert [
        table for table in TABLES if not any(fnmatch.fnmatchcase(n, table) for n in names)
    ] == []


def test_the_counter_sees_methods_and_nested_functions(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "class A:\n"
        "    async def run(self):\n"
        "        def inner():\n"
        "            pass\n"
        "        return 1\n"
    )
    assert list(functions(source, "m")) == [("m.A.run", 4), ("m.A.run.inner", 2)]
