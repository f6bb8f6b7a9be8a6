"""The project's import rules, checked statically: every module's imports are read from its
AST (those inside functions included), resolved to project modules, and checked against the
floors of the code (docs/code.md).

    contract   standard library only (and other contract modules)
    parent     never the child side, never torch / transformers / faiss / datasets (nor their kin)
    child      never the parent side
    tui        never the child side, never those heavy libraries
    engine     never textual
    entry points (engine/{train,evaluate,cli,preflight,card,replay,miracl}.py, tui/cli.py) are imported by nothing
    no import circle among project modules
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

HEAVY = ("torch", "transformers", "faiss", "datasets", "sentence_transformers", "safetensors", "tokenizers",
         "huggingface_hub")
ENTRY_POINTS = ("engine.train", "engine.cli", "engine.preflight", "engine.card", "engine.replay", "engine.miracl",
                "tui.cli")
PACKAGES = ("engine", "tui")


@dataclass(frozen=True)
class Import:
    importer: str
    target: str          # the imported module, fully qualified
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def project_modules(root: Path) -> dict[str, Path]:
    return {module_name(root, path): path for package in PACKAGES if (root / package).is_dir()
            for path in sorted((root / package).rglob("*.py"))}


def _resolve_relative(importer: str, is_package: bool, level: int, module: str | None) -> str:
    base = importer.split(".")
    base = base if is_package else base[:-1]
    base = base[:len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> list[Import]:
    """Every import in the module, at any depth; `from a import b` is a.b when that is a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = _resolve_relative(name, path.name == "__init__.py", node.level, node.module)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append(Import(name, candidate if candidate in modules else base, node.lineno))
    return found


def top(module: str) -> str:
    return module.split(".")[0]


def floor(module: str) -> str | None:
    for prefix in ("engine.contract", "engine.parent", "engine.child"):
        if module == prefix or module.startswith(prefix + "."):
            return prefix.split(".")[1]
    if module in ENTRY_POINTS:
        return "entry"
    if top(module) == "tui":
        return "tui"
    if top(module) == "engine":
        return "engine"
    return None


def is_heavy(module: str) -> bool:
    return top(module) in HEAVY


def violations(root: Path) -> list[str]:
    """Every broken rule, as 'file:line: what', plus every import circle."""
    modules = project_modules(root)
    edges: dict[str, set[str]] = {name: set() for name in modules}
    problems = []
    stdlib = sys.stdlib_module_names
    for name, path in modules.items():
        where = floor(name)
        for found in imports_of(name, path, modules):
            target, place = found.target, f"{path.relative_to(root)}:{found.line}"
            if target in modules:
                edges[name].add(target)
            target_floor = floor(target)
            if where == "contract" and target_floor != "contract" and top(target) not in stdlib \
                    and top(target) != "__future__":
                problems.append(f"{place}: the contract imports {target} (standard library only)")
            if where in ("parent", "tui") and target_floor == "child":
                problems.append(f"{place}: {where} imports the child side ({target})")
            if where in ("parent", "tui", "contract") and is_heavy(target):
                problems.append(f"{place}: {where} imports {target}")
            if where == "child" and target_floor == "parent":
                problems.append(f"{place}: the child side imports the parent side ({target})")
            if top(name) == "engine" and top(target) == "textual":
                problems.append(f"{place}: the engine imports textual ({target})")
            if target in ENTRY_POINTS and target != name:
                problems.append(f"{place}: {target} is an entry point; nothing may import it")
    problems += [f"import circle: {' -> '.join(cycle)}" for cycle in cycles(edges)]
    return problems


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(edges.get(node, ())):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return [component + [component[0]] for component in components]
