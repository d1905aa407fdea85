"""Size limits that keep the package readable: no module of recbole_fair above 500 lines, no
function or method above 60 lines of code (its docstring not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> list[tuple[str, int]]:
    r"""``(qualified name, lines)`` of every function of ``source`` whose body, without its
    docstring, spans more than ``limit`` lines (nested functions count in their parent and on
    their own)."""
    found = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = f"{prefix}{child.name}"
                body = child.body
                has_doc = (
                    isinstance(body[0], ast.Expr)
                    and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)
                )
                if has_doc and len(body) == 1:
                    continue
                first = body[1] if has_doc else body[0]
                lines = child.end_lineno - first.lineno + 1
                if lines > limit:
                    found.append((name, lines))
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, f"{prefix}{child.name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_no_module_is_longer_than_the_limit():
    too_long = {
        str(path.relative_to(REPO)): n
        for path in sorted((REPO / "recbole_fair").rglob("*.py"))
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES
    }
    assert not too_long, f"split these modules (lines > {MAX_MODULE_LINES}): {too_long}"


def test_no_function_is_longer_than_the_limit():
    too_long = {}
    for path in sorted((REPO / "recbole_fair").rglob("*.py")):
        for name, lines in long_functions(path.read_text(encoding="utf-8")):
            too_long[f"{path.relative_to(REPO)}:{name}"] = lines
    assert not too_long, f"split these functions (lines > {MAX_FUNCTION_LINES}): {too_long}"


def test_the_function_checker_counts_code_not_docstrings():
    body = "\n".join(f"    x{i} = {i}" for i in range(61))
    doc = '    """' + "\n" * 30 + '    """\n'
    source = (
        f"def long():\n{body}\n\n"
        f"def short_with_long_doc():\n{doc}    return 1\n\n"
        f"class C:\n    def method(self):\n{body.replace('    ', '        ')}\n"
    )
    assert long_functions(source) == [("long", 61), ("C.method", 61)]
    assert long_functions(source, limit=61) == []
