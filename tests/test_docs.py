"""The README and docs/ pages link to files and headings that exist (GitHub's anchor rule)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    found = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_every_relative_link_in_the_docs_resolves():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            destination = (page.parent / path).resolve() if path else page
            if not destination.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


DEFAULT = re.compile(r"`([a-z_]+(?:\.[a-z_]+)+)`,? default:? `?([0-9.]+|[a-z_-]+)`?")


def test_the_defaults_the_docs_quote_are_the_specs_own():
    """A page that says "`section.field`, default X" says what the spec's dataclasses hold (the
    field reference, docs/spec.md, is generated from them; the prose pages are checked here)."""
    from engine.contract.validation import parse_spec

    defaults = parse_spec({"name": "defaults"}).to_dict()
    quoted, wrong = 0, []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        if page.name == "spec.md":
            continue
        for dotted, said in DEFAULT.findall(page.read_text(encoding="utf-8")):
            value = defaults
            for part in dotted.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value is None:
                continue                          # not a spec field (an option, an environment name)
            quoted += 1
            if str(value) != said and not (isinstance(value, (int, float)) and float(said) == float(value)):
                wrong.append(f"{page.relative_to(ROOT)}: `{dotted}` default {said}, the spec says {value!r}")
    assert quoted >= 2 and not wrong, wrong or "no default quoted: the pattern no longer matches the pages"
