"""The "uses mailkit's code" flag (part of stage 4, *judge*): the grader
reads a student's solution cells and added cells with ``ast`` in its own
process (never in the kernel: nothing the kernel does changes it) and
reports every route to mailkit's own implementation of what the lab asks
for, not only the names written plainly (issue 25):

* the kit names the lab's metadata lists (``{"mailkit": {"kit": {"names":
  [...], "attributes": [...]}}}``), as a name, an attribute, an imported
  name under any alias (``from mailkit.labs.silence import Receiver as
  X``), or a string (``getattr(m, "MailClient")``, ``globals()["MailClient"]``);
* a module of mailkit named in a string (``sys.modules["mailkit"]``,
  ``importlib.import_module("mailkit.protocol")``, ``__import__(...)``);
* code that computes what it imports or looks up, which no static reading
  can decide: ``import_module``/``__import__`` of a built name, ``getattr``
  on a module with a built name, ``vars()``/``globals()``/``locals()``,
  ``sys.modules``, ``exec``/``eval``/``compile`` of a built string (a
  constant string is read as code), introspection (``__dict__``,
  ``__globals__``, frames, ``gc``, ``inspect``), and other programs
  (``subprocess``).  These are flagged ``cannot tell: computed import
  (...)`` for the instructor to look at, never silently passed.

A flag is for the instructor; it changes no points."""

from __future__ import annotations

import ast

__all__ = ["parse_cell", "kit_findings", "CANNOT_TELL"]

CANNOT_TELL = "cannot tell: computed import"

# Ways to import or look up by a name built at run time.
IMPORTERS = {"__import__", "import_module", "run_module", "run_path", "find_spec", "reload",
             "spec_from_file_location", "SourceFileLoader", "load_module", "exec_module"}
RUNNERS = {"exec", "eval", "compile"}
NAMESPACES = {"vars", "globals", "locals"}
# Builtins that, passed around instead of called, hide what they reach.
INDIRECT = IMPORTERS | RUNNERS | NAMESPACES | {"getattr", "__builtins__", "breakpoint"}
# Attributes that reach a module's or a function's names without naming them.
INTROSPECTION = {"__dict__", "__globals__", "__builtins__", "__subclasses__", "__code__", "__closure__",
                 "__loader__", "__spec__", "__import__", "f_globals", "f_locals", "f_back", "_getframe",
                 "modules", "system", "popen", "execv", "execve", "execvp", "spawnv", "spawnl"}
# Modules whose use can import or run anything by a built name.
OPAQUE_MODULES = {"importlib", "runpy", "pkgutil", "inspect", "gc", "ctypes", "pickle", "marshal", "builtins",
                  "subprocess", "multiprocessing", "zipimport", "code", "codeop", "dill", "shelve"}
MAX_NESTED_EXEC = 8     # exec("exec('...')") read this deep, then "cannot tell"


def parse_cell(source: str) -> ast.AST | str | None:
    """A student's cell parsed in the grader (read, never run): the tree;
    None for a syntax error; or why the grader could not parse it (nesting
    deep enough to exhaust the parser: ``1+1+...`` 100,000 times).  Never
    raises, so no cell makes a grader error of its judging."""
    try:
        return ast.parse(source)
    except SyntaxError:
        return None
    except (RecursionError, MemoryError, ValueError) as exc:
        return f"a cell the grader cannot parse ({type(exc).__name__}: nested too deep)"


def _dotted(node: ast.AST) -> str:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return ".".join([node.id, *reversed(parts)]) if isinstance(node, ast.Name) else ""


def _names_mailkit(value) -> bool:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    return isinstance(value, str) and (value == "mailkit" or "mailkit." in value or "mailkit/" in value)


def kit_findings(source: str, names, attributes=(), *, depth: int = 0) -> list[str]:
    """What in *source* reaches mailkit's implementation: ``uses mailkit's
    X`` for a kit name, ``cannot tell: computed import (how)`` where only
    running the code would tell (see the module's doc)."""
    tree = parse_cell(source)
    if tree is None:
        return []               # not Python: it does not run in the kernel either
    if isinstance(tree, str):
        return [f"{CANNOT_TELL} ({tree})"]
    kit = set(names) | set(attributes)
    used: list[str] = []
    unsure: list[str] = []
    called = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    # A string that is a statement of its own (a docstring) is never looked up or run.
    prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                root = a.name.split(".")[0]
                if root in OPAQUE_MODULES:
                    unsure.append(f"imports {a.name}")
                if root == "mailkit" and set(a.name.split(".")) & kit:
                    used += sorted(set(a.name.split(".")) & kit)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in OPAQUE_MODULES:
                unsure.append(f"imports from {module}")
            if module.startswith("mailkit"):
                used += [a.name for a in node.names if a.name in kit]
                if any(a.name == "*" for a in node.names):
                    unsure.append(f"from {module} import *")
        elif isinstance(node, ast.Name):
            if node.id in kit:
                used.append(node.id)
            elif node.id in INDIRECT and id(node) not in called:
                unsure.append(f"{node.id} passed around, not called")
        elif isinstance(node, ast.Attribute):
            if node.attr in kit:
                used.append(node.attr)
            elif node.attr in INTROSPECTION:
                unsure.append(f".{node.attr}")
        elif isinstance(node, ast.Constant) and id(node) not in prose:
            if isinstance(node.value, (str, bytes)) and _names_mailkit(node.value):
                unsure.append(f"names the module {str(node.value)[:40]!r} in a string")
            elif isinstance(node.value, str) and node.value in kit:
                used.append(node.value)
        elif isinstance(node, ast.Call):
            func = _dotted(node.func)
            last = func.rsplit(".", 1)[-1]
            first = node.args[0] if node.args else None
            constant = isinstance(first, ast.Constant) and isinstance(first.value, (str, bytes))
            if last in IMPORTERS:
                if not constant:
                    unsure.append(f"{func}(...) of a built name")
            elif last in RUNNERS and func in RUNNERS | {f"builtins.{r}" for r in RUNNERS}:
                if constant and depth < MAX_NESTED_EXEC:
                    code = first.value if isinstance(first.value, str) else first.value.decode("latin-1")
                    inner = kit_findings(code, names, attributes, depth=depth + 1)
                    used += [f[len("uses mailkit's "):] for f in inner if f.startswith("uses mailkit's ")]
                    unsure += [f for f in inner if not f.startswith("uses mailkit's ")]
                else:
                    unsure.append(f"{func} of a built string")
            elif func in NAMESPACES:
                unsure.append(f"{func}() lookup")
            elif func in ("getattr", "hasattr", "builtins.getattr") and len(node.args) >= 2:
                obj, attr = node.args[0], node.args[1]
                if isinstance(attr, ast.Constant):
                    continue            # the constant itself is read above
                root = obj
                while isinstance(root, (ast.Attribute, ast.Subscript, ast.Call)):
                    root = root.value if not isinstance(root, ast.Call) else root.func
                if not (isinstance(root, ast.Name) and root.id in ("self", "cls")):
                    unsure.append(f"{func}({_dotted(obj) or '...'}, a built name)")
    out = [f"uses mailkit's {name}" for name in sorted(set(used))]
    out += [f"{CANNOT_TELL} ({how})" for how in sorted(set(unsure))]
    return out
