#!/usr/bin/env python3
"""Fails when galantis-server's modules depend on each other in a cycle.

A module is a source file. An edge A -> B is any `crate::…` or `super::…`
path in A (in a `use` or inline) that resolves to B; a parent naming its
own child modules by relative path is their declaration, not an edge. Cycles are the strongly
connected components of that graph with more than one file. Cycles make a
crate hard to split and hide layering mistakes (the webhook processor knew
the HTTP state, the state knew the webhook batcher…), so CI keeps them out.
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(__file__), "..", "crates", "galantis-server", "src")

# Edges allowed to stay (dropped from the graph in both directions and
# reported). Empty: every cycle of issue #12 is gone; keep it that way.
ALLOWED: set = set()
# Module folders whose internal cycles are tolerated (none).
ALLOWED_PREFIXES: tuple = ()

PATH = re.compile(r"\b(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\};", re.S)


def modules():
    files = {}
    for dirpath, _, names in os.walk(ROOT):
        for n in names:
            if not n.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, n), ROOT).replace(os.sep, "/")
            if rel in ("lib.rs", "main.rs"):
                parts = []
            elif rel.endswith("/mod.rs"):
                parts = rel[: -len("/mod.rs")].split("/")
            else:
                parts = rel[: -len(".rs")].split("/")
            files[tuple(parts)] = rel
    return files


def resolve(files, parts):
    """The file of the longest prefix of `parts` that is a module."""
    for i in range(len(parts), 0, -1):
        if tuple(parts[:i]) in files:
            return files[tuple(parts[:i])]
    return None


def expand_use_tree(tree):
    """`a::{b, c::{d}}, e` -> ["a::b", "a::c::d", "e"] (`self` names the prefix)."""
    items, depth, cur = [], 0, ""
    for ch in tree:
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    items.append(cur)
    out = []
    for item in (i.strip() for i in items):
        item = re.sub(r"\s+as\s+\w+$", "", item)
        if not item:
            continue
        if "{" in item:
            head, _, rest = item.partition("{")
            head = head.rstrip(":").strip()
            for leaf in expand_use_tree(rest[: rest.rindex("}")]):
                out.append("::".join(x for x in (head, leaf) if x))
        elif item == "self":
            out.append("")
        elif item != "*":
            out.append(item[: -len("::self")] if item.endswith("::self") else item)
    return out


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", "", src, flags=re.S)
    return re.sub(r"//[^\n]*", "", src)


def edges(files):
    out = {f: set() for f in files.values()}
    for mod, rel in files.items():
        with open(os.path.join(ROOT, rel), encoding="utf-8") as fh:
            src = strip_comments(fh.read())
        # `#[cfg(test)] mod tests` uses its parent freely; not a dependency.
        src = re.split(r"#\[cfg\(test\)\]\s*mod\s+tests", src)[0]

        paths = []
        for anchor, prefix, group in USE_GROUP.findall(src):
            for leaf in expand_use_tree(group):
                paths.append((anchor, prefix + ("::" + leaf if leaf else "")))
        paths += PATH.findall(src)
        for anchor, tail in paths:
            segs = [s for s in tail.split("::") if s]
            if anchor == "crate":
                full = segs
            else:
                # `super` from a.rs (module a) is a's parent; from x/mod.rs too.
                sup = list(mod[:-1])
                while segs and segs[0] == "super":
                    segs = segs[1:]
                    sup = sup[:-1]
                full = sup + segs
            target = resolve(files, full)
            if target and target != rel:
                out[rel].add(target)
    return out


def sccs(graph):
    index, low, stack, on, result, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
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
            result.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [c for c in result if len(c) > 1]


def main():
    files = modules()
    graph = edges(files)
    allowed_seen = []
    for a, b in [(a, b) for a in graph for b in graph[a]]:
        pair = frozenset({a, b})
        both_sandbox = a.startswith(ALLOWED_PREFIXES) and b.startswith(ALLOWED_PREFIXES)
        if pair in ALLOWED or both_sandbox:
            graph[a].discard(b)
            if pair in ALLOWED and pair not in allowed_seen:
                allowed_seen.append(pair)
    for pair in allowed_seen:
        print("allowed (to be removed):", " <-> ".join(sorted(pair)))
    cycles = sccs(graph)
    cycles = [c for c in cycles if not all(f.startswith(ALLOWED_PREFIXES) for f in c)]
    for c in cycles:
        print("cycle:", ", ".join(c))
        for a in c:
            deps = sorted(b for b in graph[a] if b in c)
            print(f"  {a} -> {', '.join(deps)}")
    if cycles:
        print(f"{len(cycles)} module cycle(s) in galantis-server", file=sys.stderr)
        return 1
    print("no module cycles in galantis-server")
    return 0


if __name__ == "__main__":
    sys.exit(main())
