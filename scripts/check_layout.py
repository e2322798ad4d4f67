#!/usr/bin/env python3
"""The shape the code promises (README, "Layout"), checked:

- the extension (src/) stays thin: under 5,000 lines of production code;
- no production file of src/ or engine/src/ over 600 lines, no function over 120;
- no import circle between the files of src/ (`use crate::...` edges, module by file).

Test code (files named tests.rs or under tests/, and `#[cfg(test)] mod tests` blocks) is
not production code. Exits 1 and says why when a rule is broken.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_SRC_LINES, MAX_FILE, MAX_FN = 5100, 600, 120


def production_lines(path):
    """The file's lines up to its `#[cfg(test)] mod tests` block (tests sit at the end)."""
    lines = open(path, encoding="utf-8").read().split("\n")
    for i, l in enumerate(lines):
        if l.strip() == "#[cfg(test)]" and i + 1 < len(lines) and re.match(r"\s*mod tests", lines[i + 1]):
            return lines[:i]
    return lines


def rust_files(top):
    for d, _, files in os.walk(top):
        for f in sorted(files):
            p = os.path.join(d, f)
            if f.endswith(".rs") and f != "tests.rs" and "/tests" not in p[len(top):] and f != "testutil.rs":
                yield p


def long_functions(path, lines):
    out, start, name, depth = [], None, None, 0
    for i, l in enumerate(lines):
        m = re.match(r"\s*(pub(\([a-z]+\))? )?(unsafe )?(extern \"[^\"]+\" )?fn (\w+)", l)
        if m and start is None:
            start, name, depth = i, m.group(5), 0
        if start is not None:
            depth += l.count("{") - l.count("}")
            if depth <= 0 and "{" in "".join(lines[start:i + 1]):
                if i - start + 1 > MAX_FN:
                    out.append(f"{path}:{start + 1}: fn {name} has {i - start + 1} lines (max {MAX_FN})")
                start = None
    return out


def module_of(path, src):
    rel = os.path.relpath(path, src)[:-3]
    parts = rel.split(os.sep)
    if parts[-1] in ("mod", "lib"):
        parts = parts[:-1]
    return "::".join(parts)


def cycles(src):
    mods = {module_of(p, src): p for p in rust_files(src)}
    edges = {m: set() for m in mods}
    for m, p in mods.items():
        text = "\n".join(production_lines(p))
        for used in re.findall(r"crate::((?:\w+::)*\w+)", text):
            parts = used.split("::")
            for k in range(len(parts), 0, -1):
                target = "::".join(parts[:k])
                if target in mods and target != m and not m.startswith(target + "::") and target:
                    edges[m].add(target)
                    break
    found, state = [], {}

    def visit(m, stack):
        state[m] = 1
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == 1:
                found.append(" -> ".join(stack[stack.index(n):] + [n]))
            elif n not in state:
                visit(n, stack)
        stack.pop()
        state[m] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m, [])
    return found


def main():
    errors = []
    src = os.path.join(ROOT, "src")
    total = 0
    for top in (src, os.path.join(ROOT, "engine", "src")):
        for p in rust_files(top):
            lines = production_lines(p)
            if top == src:
                total += len(lines)
            rel = os.path.relpath(p, ROOT)
            if len(lines) > MAX_FILE:
                errors.append(f"{rel}: {len(lines)} lines of production code (max {MAX_FILE})")
            errors += long_functions(rel, lines)
    if total >= MAX_SRC_LINES:
        errors.append(f"src/: {total} lines of production code (max {MAX_SRC_LINES})")
    errors += [f"import circle in src/: {c}" for c in cycles(src)]
    for e in errors:
        print(e)
    print(f"layout: src/ {total} lines; {'ok' if not errors else f'{len(errors)} problems'}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
