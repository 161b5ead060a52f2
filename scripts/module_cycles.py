#!/usr/bin/env python3
"""Finds import cycles between the modules of each crate (scripts/test.sh runs it; exit 1 on a cycle).

A module is a file under `<crate>/src/` (`a.rs` or `a/mod.rs` is `a`, `a/b.rs` is `a::b`). An edge
M -> N is a `crate::N...` path (in a `use` or inline) or a `super::` path in M's code outside its
`#[cfg(test)]` module, resolved to the longest module name it starts with. Edges between a module and
its own ancestors or descendants are left out (a submodule using its parent is how Rust nests code),
so what remains is two sibling rooms that each need the other: the cycles the restructuring removed.

It also checks each crate's layers (`LAYERS` below, the order its `lib.rs` layout section gives): a
top-level room may import rooms of a lower layer and nothing of a higher one, nor of another room of its
own layer; a room missing from the list is an error, so a new room has to be placed.

Usage: scripts/module_cycles.py [CRATE_DIR ...]   (default: shared worker coordinator)
"""
import re
import sys
from pathlib import Path

PATH_RE = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP_RE = re.compile(r"\buse\s+(crate|super)::\{([^;]*)\};", re.S)


# Per crate, its top-level rooms from the bottom layer up; rooms in one tuple form one layer.
LAYERS = {
    "worker": [
        ("error",),
        ("agent",),
        ("prep",),
        ("synth",),
        ("train",),
        ("mersiamc3d",),
        ("baselines",),
        ("engine_trainer", "user_method", "fixtures"),
        ("bench",),
    ],
    "coordinator": [
        ("error",),
        ("spec", "task_state"),
        ("store",),
        ("plan",),
        ("metrics",),
        ("scheduler", "results"),
        ("report",),
        ("k8s", "slurm"),
        ("rpc",),
    ],
}


def layer_violations(crate: str, modules, edges):
    """Imports from a room to a higher room (or a sibling room of its own layer), and unplaced rooms."""
    layers = LAYERS.get(crate)
    if layers is None:
        return []
    level = {room: i for i, group in enumerate(layers) for room in group}
    out = []
    rooms = sorted({m.split("::")[0] for m in modules if m and m.split("::")[0] != "test_support"})
    for r in rooms:
        if r not in level:
            out.append(f"{crate}: room `{r}` is in no layer (scripts/module_cycles.py LAYERS)")
    for a, targets in sorted(edges.items()):
        ra = a.split("::")[0]
        for b in sorted(targets):
            rb = b.split("::")[0]
            if ra == rb or ra not in level or rb not in level:
                continue
            if level[rb] >= level[ra]:
                out.append(f"{crate}: `{a}` imports `{b}`, a room of layer {level[rb]} from layer {level[ra]}")
    return out


def module_name(src: Path, f: Path) -> str:
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return "::".join(parts)


def code_outside_tests(text: str) -> str:
    # Drop line comments and everything from the first `#[cfg(test)]` on (test modules sit at the end).
    text = "\n".join(line.split("//")[0] for line in text.splitlines())
    i = text.find("#[cfg(test)]")
    return text if i < 0 else text[:i]


def resolve(path: list, modules: set) -> str:
    for n in range(len(path), 0, -1):
        name = "::".join(path[:n])
        if name in modules:
            return name
    return ""


def related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "::") or b.startswith(a + "::") or not a or not b


def edges_of(crate: Path):
    src = crate / "src"
    files = [f for f in src.rglob("*.rs")]
    modules = {module_name(src, f) for f in files}
    edges = {}
    for f in files:
        m = module_name(src, f)
        if m.split("::")[-1] == "tests" or "test_support" in m.split("::"):
            continue  # test code in files of its own (`#[cfg(test)] mod tests;`, a crate's test_support/)
        text = code_outside_tests(f.read_text(encoding="utf-8"))
        refs = []
        for root, group in USE_GROUP_RE.findall(text):
            for item in re.split(r",\s*", group):
                item = item.strip().split(" as ")[0]
                if item:
                    refs.append((root, item.replace("{", "").split("::")))
        for root, rest in PATH_RE.findall(text):
            refs.append((root, [p for p in rest.split("::") if p]))
        for root, path in refs:
            if root == "super":
                parent = m.split("::")[:-1]
                path = parent + path
            target = resolve(path, modules)
            if not related(m, target):
                edges.setdefault(m, set()).add(target)
    return modules, edges


def cycles(modules, edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                strong(w)
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

    sys.setrecursionlimit(10000)
    for v in sorted(modules):
        if v not in index:
            strong(v)
    return out


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    crates = sys.argv[1:] or ["shared", "worker", "coordinator"]
    found = False
    for c in crates:
        modules, edges = edges_of(root / c if not Path(c).is_absolute() else Path(c))
        cs = cycles(modules, edges)
        n = sum(len(v) for v in edges.values())
        if cs:
            found = True
            for comp in cs:
                detail = "; ".join(
                    f"{a} -> {b}" for a in comp for b in sorted(edges.get(a, ())) if b in comp
                )
                print(f"{c}: import cycle between {', '.join(comp)} ({detail})")
        else:
            print(f"{c}: {len(modules)} modules, {n} imports between them, no cycle")
        bad = layer_violations(Path(c).name, modules, edges)
        for line in bad:
            print(line)
        if bad:
            found = True
        elif Path(c).name in LAYERS:
            print(f"{c}: every import runs down its layers")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
