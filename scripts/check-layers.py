#!/usr/bin/env python3
"""Fails when top-level modules of the server crate import each other in a cycle.

A module's imports are the `crate::<module>` paths in its files (server/src/<module>.rs or
server/src/<module>/**). The pure core is a separate crate (core/), which the compiler keeps
free of the server; this check keeps the server's own layers a directed graph.
"""
import pathlib
import re
import sys

SRC = pathlib.Path(__file__).resolve().parent.parent / "server" / "src"
PATH = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
# `use crate::{a, b::c}` groups
GROUP = re.compile(r"\buse crate::\{([^;]*)\};", re.S)


def module_files():
    for entry in sorted(SRC.iterdir()):
        if entry.name in ("lib.rs", "main.rs"):
            continue
        if entry.is_dir():
            yield entry.name, sorted(entry.rglob("*.rs"))
        elif entry.suffix == ".rs":
            yield entry.stem, [entry]


def without_tests(text):
    # Test modules may reach anywhere; they are not part of the layering.
    cut = text.find("#[cfg(test)]\nmod tests")
    return text if cut < 0 else text[:cut]


def imports(files, modules):
    found = set()
    for f in files:
        text = without_tests(f.read_text())
        found.update(PATH.findall(text))
        for group in GROUP.findall(text):
            found.update(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", group))
    return {m for m in found if m in modules}


def main():
    files = dict(module_files())
    graph = {m: imports(fs, files) - {m} for m, fs in files.items()}
    cycles = []
    for a in sorted(graph):
        # a cycle through a: a reaches itself
        stack, seen = [(a, [a])], set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == a:
                    cycles.append(path + [a])
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, path + [nxt]))
    if "-v" in sys.argv:
        for m in sorted(graph):
            print(f"{m} -> {', '.join(sorted(graph[m])) or '-'}")
    if cycles:
        shown = {tuple(sorted(set(c))): c for c in cycles}
        for c in shown.values():
            print("import cycle: " + " -> ".join(c), file=sys.stderr)
        sys.exit(1)
    print(f"layers: {len(graph)} top-level modules, no import cycles")


if __name__ == "__main__":
    main()
