"""The package's architecture: subpackages in layers, imports only downward, no import circle,
no module over 600 lines. Every import counts, in-function ones too."""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "flossrepro"
#: top to bottom; a module may import its own layer and the layers below it
LAYERS = ("run", "report", "figures", "perf", "jobs", "store", "engine", "tasks", "base")
BASE = ("errors", "constants")
MAX_LINES = 600


def _modname(f: Path) -> str:
    parts = list(f.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _layer(mod: str) -> str:
    p = mod.split(".")
    if len(p) == 1:
        return "api"  # flossrepro/__init__.py: the public API, on top of everything
    if p[1] in LAYERS:
        return p[1]
    if p[1] in BASE:
        return "base"
    return "entry"  # thin entry modules (python -m flossrepro.aggregate, ...), on top


def import_graph() -> dict[str, set[str]]:
    """``{module: modules of this package it imports}``."""
    mods = {_modname(f): f for f in PKG.rglob("*.py")}
    g: dict[str, set[str]] = defaultdict(set)
    for mod, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text())):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.startswith("flossrepro"):
                subs = [f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in mods]
                targets = subs or [node.module]
            elif isinstance(node, ast.ImportFrom) and node.level:
                raise AssertionError(f"{f}: relative import (write flossrepro.<subpackage>...)")
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name.startswith("flossrepro")]
            g[mod].update(t for t in targets if t != mod and t in mods)
    return g


def _cycles(g: dict[str, set[str]]) -> list[list[str]]:
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(g):
        if v not in index:
            visit(v)
    return out


def subpackage_imports() -> dict[str, set[str]]:
    """``{layer: layers it imports}`` (what the architecture looks like from above)."""
    out: dict[str, set[str]] = defaultdict(set)
    for a, ts in import_graph().items():
        for b in ts:
            if _layer(a) != _layer(b):
                out[_layer(a)].add(_layer(b))
    return out


def test_no_import_circle():
    assert _cycles(import_graph()) == []


def test_imports_only_go_down():
    up = []
    for a, ts in import_graph().items():
        la = _layer(a)
        for b in ts:
            lb = _layer(b)
            if la in LAYERS and lb in LAYERS and LAYERS.index(lb) < LAYERS.index(la):
                up.append(f"{a} ({la}) -> {b} ({lb})")
            if lb in ("api", "entry"):
                up.append(f"{a} -> {b} (the public API and entry modules sit on top)")
    assert up == []


def test_the_layering_test_can_fail():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]
    assert _layer("flossrepro.engine.lyapunov") == "engine" and _layer("flossrepro.errors") == "base"


def test_no_module_over_600_lines():
    long = {str(f.relative_to(PKG.parent)): n for f in PKG.rglob("*.py")
            if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}


if __name__ == "__main__":  # print the subpackage imports (for the docs)
    for a, bs in sorted(subpackage_imports().items()):
        print(f"{a:8s} -> {', '.join(sorted(bs))}")
