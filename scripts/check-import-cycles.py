#!/usr/bin/env python3
"""Checks the module layering of src/ (run by .ci/run; standard library only).

1. No library file imports the command line: only src/main.rs and src/cli/ may name `cli`.
2. No import cycle between files. An edge A -> B means file A names a path that resolves into
   file B: `crate::a::b::Item` (the longest prefix that is a module file) or `super::…`. A
   module's own submodules are not counted: a parent owns its children and re-exports their
   items (`pub use spec::RunSpec` in run/mod.rs); a child naming `crate::run::Observers` depends
   on its parent, which is the one direction that counts.

Prints each violation and exits 1, else prints a one-line summary.
"""

import re
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_of(path: Path) -> list:
    """The module path of a file: src/run/mod.rs -> ['run'], src/run/spec.rs -> ['run', 'spec']."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def file_of(module: list):
    """The file defining `module` (a list of names), or None."""
    if not module:
        return SRC / "lib.rs"
    base = SRC.joinpath(*module)
    for candidate in (base.with_suffix(".rs"), base / "mod.rs"):
        if candidate.exists():
            return candidate
    return None


def resolve(module: list):
    """The file of the longest prefix of `module` that is a module file."""
    for end in range(len(module), -1, -1):
        found = file_of(module[:end])
        if found is not None:
            return found
    return None


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def expand_use(tree: str) -> list:
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        return [re.sub(r"\s+as\s+\w+$", "", tree).strip()]
    prefix, inner = tree[:brace], tree[brace + 1 : tree.rfind("}")]
    items, depth, current = [], 0, ""
    for char in inner:
        if char == "," and depth == 0:
            items.append(current)
            current = ""
            continue
        depth += char == "{"
        depth -= char == "}"
        current += char
    items.append(current)
    paths = []
    for item in filter(str.strip, items):
        for path in expand_use(item):
            paths.append(prefix.rstrip(":") if path == "self" else prefix + path)
    return paths


def referenced_paths(text: str) -> list:
    paths = []
    for statement in re.findall(r"\buse\s+([^;]+);", text):
        paths.extend(expand_use(statement))
    body = re.sub(r"\buse\s+[^;]+;", "", text)
    paths.extend(re.findall(rf"\b(?:crate|super|{IDENT})(?:::{IDENT})+", body))
    return paths


def edges_of(path: Path, text: str) -> set:
    here = module_of(path)
    is_dir_module = path.name in ("mod.rs", "lib.rs", "main.rs")
    targets = set()
    for reference in referenced_paths(text):
        segments = [s for s in reference.replace(" ", "").split("::") if s]
        if not segments:
            continue
        head = segments[0]
        if head == "crate":
            module = segments[1:]
        elif head == "super":
            parent = here[:-1]
            rest = segments[1:]
            while rest and rest[0] == "super":
                parent, rest = parent[:-1], rest[1:]
            module = parent + rest
        elif head == "self":
            module = here + segments[1:]
        else:
            continue
        target = resolve(module)
        if target is None or target == path:
            continue
        if is_dir_module and module_of(target)[: len(here)] == here:
            continue  # the module's own descendant
        targets.add(target)
    return targets


def main() -> int:
    files = sorted(SRC.rglob("*.rs"))
    graph = {}
    problems = []
    for path in files:
        text = strip_comments(path.read_text())
        graph[path] = edges_of(path, text)
        in_cli = path == SRC / "main.rs" or (SRC / "cli") in path.parents
        if not in_cli and re.search(r"\b(crate::cli\b|mod\s+cli\b|use\s+cli::)", text):
            problems.append(f"{path.relative_to(SRC.parent)}: the library imports the command line (cli)")

    # Tarjan's strongly connected components: every component of two or more files is a cycle.
    index, low, stack, on_stack, components = {}, {}, [], set(), []
    counter = [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(component)

    sys.setrecursionlimit(10000)
    for node in graph:
        if node not in index:
            visit(node)
    for component in components:
        names = sorted(str(p.relative_to(SRC.parent)) for p in component)
        detail = []
        for p in sorted(component):
            inside = sorted(str(t.relative_to(SRC.parent)) for t in graph[p] if t in component)
            detail.append(f"    {p.relative_to(SRC.parent)} -> {', '.join(inside)}")
        problems.append("import cycle between " + ", ".join(names) + "\n" + "\n".join(detail))

    for problem in problems:
        print(problem)
    edges = sum(len(t) for t in graph.values())
    if problems:
        return 1
    print(f"imports: {len(graph)} files, {edges} edges, no cycle, no library file imports cli")
    return 0


if __name__ == "__main__":
    sys.exit(main())
