"""The layout's promises, read from the source (AST, nothing imported or run).

- no import cycle between project modules;
- no runtime module (``codec`` outside ``codec/train``, ``realtime``, ``sender``, ``receiver``) imports ``codec.train``;
- ``realtime/`` is transport only: nothing it imports, directly or through other project modules, is model code
  (torch, mediapipe, numba, CTranslate2, the tokenizer, the renderer, the speech model).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("codec", "realtime", "sender", "receiver", "bench")
RUNTIME = ("codec", "realtime", "sender", "receiver")
MODEL_CODE = ("torch", "mediapipe", "numba", "ctranslate2", "codec.tokenizer", "codec.grfsq", "codec.render",
              "codec.speech", "codec.face", "codec.train")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every project module by dotted name."""
    return {module_name(p, root): p for pkg in PACKAGES for p in sorted((root / pkg).rglob("*.py"))}


def imported_names(path: Path, name: str, is_package: bool) -> Iterator[str]:
    """Dotted names a module imports (anywhere in it, functions included), relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            yield mod
            yield from (f"{mod}.{a.name}" for a in node.names)


def import_graph(root: Path = ROOT) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Edges between project modules, and each module's outside imports (top-level package names and
    project module names both, for the model-code check)."""
    mods = project_modules(root)
    edges: dict[str, set[str]] = {m: set() for m in mods}
    external: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        for name in imported_names(path, m, path.name == "__init__.py"):
            if name in mods and name != m:
                edges[m].add(name)
            elif name.split(".")[0] not in PACKAGES:
                external[m].add(name.split(".")[0])
    return edges, external


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def reachable(edges: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for n in edges[m]:
            if n not in seen:
                seen.add(n)
                todo.append(n)
    return seen


def depth(edges: dict[str, set[str]]) -> int:
    """Modules on the longest import chain (the graph must be acyclic)."""
    memo: dict[str, int] = {}

    def d(m: str) -> int:
        if m not in memo:
            memo[m] = 1 + max((d(n) for n in edges[m]), default=0)
        return memo[m]

    return max(d(m) for m in edges)


def _is(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layout_violations(root: Path = ROOT) -> list[str]:
    """Every broken promise of the layout, one line each."""
    edges, external = import_graph(root)
    problems = []
    cycle = find_cycle(edges)
    if cycle:
        problems.append("import cycle: " + " -> ".join(cycle))
    for m, targets in sorted(edges.items()):
        if _is(m, "codec.train") or not any(_is(m, p) for p in RUNTIME):
            continue
        for t in sorted(targets):
            if _is(t, "codec.train"):
                problems.append(f"runtime module {m} imports {t}")
    for m in sorted(edges):
        if not _is(m, "realtime"):
            continue
        closure = reachable(edges, m) if not cycle else edges[m]
        names = closure | external[m] | {e for n in closure for e in external[n]}
        for bad in MODEL_CODE:
            hits = sorted(n for n in names if _is(n, bad))
            if hits:
                problems.append(f"transport module {m} reaches model code {hits[0]}")
    return problems


def test_the_project_keeps_its_layout() -> None:
    assert layout_violations() == []


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for pkg in PACKAGES:
        (root / pkg).mkdir(exist_ok=True)
        (root / pkg / "__init__.py").touch()
    return root


@pytest.mark.parametrize("files, expected", [
    ({"codec/a.py": "from codec import b\n", "codec/b.py": "def f():\n    from codec.a import x\n"},
     "import cycle: codec.a -> codec.b -> codec.a"),
    ({"codec/train/__init__.py": "", "codec/train/fit.py": "", "codec/api.py": "from codec.train.fit import go\n"},
     "runtime module codec.api imports codec.train.fit"),
    ({"realtime/peer.py": "from codec import errors\n", "codec/errors.py": "import torch\n"},
     "transport module realtime.peer reaches model code torch"),
    ({"realtime/peer.py": "from codec.tokenizer import load\n", "codec/tokenizer.py": ""},
     "transport module realtime.peer reaches model code codec.tokenizer"),
])
def test_the_checks_catch_what_they_promise(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    assert expected in layout_violations(_write(tmp_path, files))


def test_bench_may_import_training_code(tmp_path: Path) -> None:
    root = _write(tmp_path, {"codec/train/__init__.py": "", "codec/train/corpus.py": "",
                             "bench/run.py": "from codec.train.corpus import split\n"})
    assert layout_violations(root) == []


if __name__ == "__main__":
    e, _ = import_graph()
    print(f"{len(e)} modules, {sum(map(len, e.values()))} imports between them, longest chain {depth(e)} modules")
