"""The extension dependency graph: load order, cycles, and what is blocked behind them.

Pure functions over names and their ``depends_on`` lists (no extension objects, no I/O), so
the manager's lifecycle code only asks "in which order" and "what cannot load".
"""

from __future__ import annotations

from typing import Iterable

__all__ = ["dependency_order"]


def dependency_order(names: list[str], deps: dict[str, list[str]]) -> tuple[list[str], dict[str, str], list[str]]:
    """Stable topological order of ``names`` (dependencies first), the members of dependency cycles
    with a message naming the cycle, and the names blocked only behind a cycle (in order)."""
    order, rest = _kahn(names, deps)
    cycles: dict[str, str] = {}
    for component in _strongly_connected(rest, deps):
        if len(component) > 1 or component[0] in deps[component[0]]:
            path = _cycle_path(component, deps)
            for n in component:
                cycles[n] = "dependency cycle: " + " -> ".join(path)
    others = [n for n in rest if n not in cycles]
    blocked, _ = _kahn(others, {n: [d for d in deps[n] if d not in cycles] for n in others})
    return order, cycles, blocked


def _kahn(names: list[str], deps: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Stable topological order of ``names`` (deps first) and the names left over (in or behind cycles)."""
    position = {n: i for i, n in enumerate(names)}
    indegree = {n: len({d for d in deps[n] if d in position}) for n in names}
    dependents: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        for d in {d for d in deps[n] if d in position}:
            dependents[d].append(n)
    ready = [n for n in names if indegree[n] == 0]
    order: list[str] = []
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in dependents[n]:
            indegree[m] -= 1
            if indegree[m] == 0:
                ready.append(m)
        ready.sort(key=position.__getitem__)
    done = set(order)
    return order, [n for n in names if n not in done]


def _strongly_connected(nodes: Iterable[str], deps: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm over ``nodes`` (edges: node -> its deps), components in discovery order."""
    nodes = list(nodes)
    allowed = set(nodes)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in deps.get(v, ()):
            if w not in allowed:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            out.append(sorted(component, key=nodes.index))

    for v in nodes:
        if v not in index:
            visit(v)
    return out


def _cycle_path(component: list[str], deps: dict[str, list[str]]) -> list[str]:
    """One cycle through the component's first node, as names (first repeated at the end)."""
    members = set(component)
    start = component[0]
    path = [start]
    seen = {start}

    def walk(v: str) -> bool:
        for w in deps.get(v, ()):
            if w == start:
                path.append(start)
                return True
            if w in members and w not in seen:
                seen.add(w)
                path.append(w)
                if walk(w):
                    return True
                path.pop()
        return False

    walk(start)
    return path
