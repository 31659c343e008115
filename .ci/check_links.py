#!/usr/bin/env python3
"""Every relative link and anchor in the repository's Markdown resolves: files exist, and an
anchor names a heading of its target (GitHub's slug rule). Offline; exits 1 listing the broken."""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def documents():
    yield from sorted(ROOT.glob("*.md"))
    yield from sorted((ROOT / "docs").glob("*.md"))
    yield from sorted((ROOT / "deploy").glob("*.md"))


def prose(path):
    """The lines outside fenced code blocks."""
    fenced = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            yield line


def slug(heading):
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    found = set()
    for line in prose(path):
        match = re.match(r"^#{1,6} (.*)", line)
        if match:
            found.add(slug(match.group(1)))
    return found


def broken_links():
    for doc in documents():
        for line in prose(doc):
            for target in LINK.findall(line):
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue
                file_part, _, anchor = target.partition("#")
                resolved = (doc.parent / file_part).resolve() if file_part else doc
                where = f"{doc.relative_to(ROOT)}: {target}"
                if not resolved.exists():
                    yield f"{where} (no such file)"
                elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                    yield f"{where} (no such heading)"


def main():
    broken = list(broken_links())
    for problem in broken:
        print(problem)
    if broken:
        sys.exit(1)
    print("every relative link and anchor resolves")


if __name__ == "__main__":
    main()
