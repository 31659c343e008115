#!/usr/bin/env python3
"""The crate's module graph, from the `crate::` paths each top-level module's code names (tests
aside): it has no cycle, and every arrow is one DESIGN.md's drawing allows. Exits 1 naming the
cycle or the arrow."""

import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "src"

# What each module may use: the arrows of DESIGN.md's "Module dependencies", along the data's
# path. Leaves use nothing of the crate.
ALLOWED = {
    "clock": set(),
    # Grants name tenants, checked by the one tenant-id rule, the event schema's.
    "config": {"event"},
    "tls": {"file_digest"},
    "file_digest": set(),
    "prefetch": set(),
    "dashboard": set(),
    "proto": set(),
    "event": {"prefetch"},
    "catalog": {"event"},
    "store": {"event", "catalog", "config", "prefetch"},
    "snapshot": {"store", "event", "config"},
    "changelog": {"store", "event", "config"},
    "ops": {"store", "event", "config", "tls", "clock"},
    "issues": {"changelog", "store", "event", "catalog", "config", "clock"},
    "alerts": {"changelog", "store", "event", "catalog", "config", "clock", "ops"},
    "notify": {"alerts", "changelog", "catalog", "config", "clock", "ops", "file_digest"},
    "query": {"store", "event", "catalog", "issues", "config", "clock"},
    "ingest": {"store", "event", "catalog", "snapshot", "ops", "config", "clock", "alerts"},
    "cluster": {"query", "store", "event", "config", "clock", "proto"},
    "api": {"query", "cluster", "ingest", "issues", "alerts", "store", "event", "catalog",
            "ops", "config", "clock", "tls", "proto", "changelog", "dashboard", "notify"},
    "testkit": {"event", "store", "query", "clock", "config"},
    "server": None,  # wires everything
}


def modules():
    for path in sorted(SRC.iterdir()):
        name = path.stem if path.suffix == ".rs" else path.name
        if name in ("lib", "bin"):
            continue
        files = sorted(path.rglob("*.rs")) if path.is_dir() else [path]
        yield name, files


def code_of(path):
    text = path.read_text(encoding="utf-8")
    # Unit tests may reach anywhere; they sit at the end of a file.
    return text.split("#[cfg(test)]", 1)[0]


def graph():
    names = {name for name, _ in modules()}
    edges = {}
    for name, files in modules():
        used = set()
        for path in files:
            for target in re.findall(r"crate::([a-z_]+)", code_of(path)):
                if target in names and target != name:
                    used.add(target)
        edges[name] = used
    return edges


def cycle(edges):
    state = {}

    def visit(node, trail):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return trail[trail.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, trail + [nxt])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def main():
    edges = graph()
    problems = []
    for name, used in sorted(edges.items()):
        if name not in ALLOWED:
            problems.append(f"{name}: a module DESIGN.md's drawing does not place")
            continue
        allowed = ALLOWED[name]
        if allowed is None:
            continue
        for target in sorted(used - allowed):
            problems.append(f"{name} uses {target}, an arrow the drawing does not have")
    found = cycle(edges)
    if found:
        problems.append("cycle: " + " -> ".join(found))
    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"{len(edges)} modules, no cycle, every arrow allowed")


if __name__ == "__main__":
    main()
