"""The English–Korean glossary and the Korean chapter summaries (issue #15).

Every glossary entry has English terms, a Korean term, a definition and the
chapter that explains it; every entry is linked from a page of the book with
a ``{term}`` role; every chapter page ends with a ``## 한국어 요약`` section of
6 to 10 Korean lines just before its exercises. The format of an entry is
described at the top of ``book/glossary.md``.
"""

import dataclasses
import re

import pytest
import yaml
from conftest import ROOT

BOOK = ROOT / "book"
GLOSSARY = BOOK / "glossary.md"
HANGUL = re.compile(r"[\uac00-\ud7a3]")
LABEL_LINE = re.compile(r"^\(([\w-]+)\)=\s*$")
TERM_ROLE = re.compile(r"\{term\}`([^`]+)`")
DEFINITION = re.compile(
    r"^\*\*(?P<korean>[^*]+)\*\*(?: \((?P<alternatives>[^()]+)\))?: "
    r"(?P<definition>.+?\.) Introduced in \{ref\}`(?P<label>[\w-]+)`\.$"
)
SUMMARY_HEADING = "## 한국어 요약"
SUMMARY_LINES = range(6, 11)


@dataclasses.dataclass
class Entry:
    terms: list
    text: str
    line: int
    korean: str = ""
    alternatives: str = ""
    definition: str = ""
    label: str = ""


def parse_glossary(text):
    """The entries of the ``glossary`` directive in ``text``, in order."""
    lines = text.splitlines()
    start = next(
        i
        for i, line in enumerate(lines)
        if line.strip() in (":::{glossary}", "```{glossary}")
    )
    entries, terms, body = [], [], []
    first_line = None

    def close():
        if terms:
            entries.append(Entry(list(terms), " ".join(body), first_line))
        terms.clear()
        body.clear()

    for number, line in enumerate(lines[start + 1 :], start + 2):
        if line.strip() in (":::", "```"):
            break
        if not line.strip() or line.startswith(":"):
            continue
        if line[0].isspace():
            body.append(line.strip())
        else:
            if body:
                close()
            if not terms:
                first_line = number
            terms.append(line.strip())
    close()
    for entry in entries:
        match = DEFINITION.match(entry.text)
        if match:
            entry.korean = match["korean"]
            entry.alternatives = match["alternatives"] or ""
            entry.definition = match["definition"]
            entry.label = match["label"]
    return entries


def entry_problems(entry, chapter_labels):
    """What is wrong with one entry, in words (empty if nothing)."""
    where = f"glossary line {entry.line} ({entry.terms[0]})"
    problems = []
    for term in entry.terms:
        if HANGUL.search(term) or not re.search(r"[A-Za-z]", term):
            problems.append(f"{where}: term {term!r} is not English")
    if not entry.label:
        return problems + [
            f"{where}: definition does not read '**한국어** (alternatives): "
            "Sentence. Introduced in {ref}`label`.'"
        ]
    if not HANGUL.search(entry.korean + entry.alternatives):
        problems.append(f"{where}: no Korean term")
    if len(re.findall(r"[A-Za-z]{2,}", entry.definition)) < 4:
        problems.append(f"{where}: the definition is not an English sentence")
    if entry.label not in chapter_labels:
        problems.append(
            f"{where}: {entry.label!r} is not the label of a chapter"
        )
    return problems


def term_targets(text):
    """The lower-case targets of every ``{term}`` role in ``text``."""
    targets = set()
    prose = "\n".join(
        line for line in text.splitlines() if not line.startswith("%")
    )
    for content in TERM_ROLE.findall(prose):
        content = " ".join(content.split())
        explicit = re.fullmatch(r".*<([^<>]+)>", content)
        targets.add((explicit[1] if explicit else content).strip().lower())
    return targets


def summary_problems(text):
    """What is wrong with a page's Korean summary (empty if nothing)."""
    lines = text.splitlines()
    where = [
        i for i, line in enumerate(lines) if line.strip() == SUMMARY_HEADING
    ]
    if len(where) != 1:
        return [f"{len(where)} '{SUMMARY_HEADING}' headings, expected 1"]
    content, next_heading = [], None
    for line in lines[where[0] + 1 :]:
        if line.startswith("#"):
            next_heading = line.strip()
            break
        if (
            line.strip()
            and not LABEL_LINE.match(line)
            and not line.startswith("%")
        ):
            content.append(line)
    problems = []
    if len(content) not in SUMMARY_LINES:
        problems.append(
            f"the summary has {len(content)} lines, expected 6 to 10"
        )
    problems += [
        f"summary line without Korean: {line!r}"
        for line in content
        if not HANGUL.search(line)
    ]
    sections = [line.strip() for line in lines if line.startswith("## ")]
    if "## Exercises" in sections:
        if next_heading != "## Exercises":
            problems.append(
                f"the summary is followed by {next_heading!r}, "
                "not '## Exercises'"
            )
    elif sections.index(SUMMARY_HEADING) != len(sections) - 2:
        problems.append(
            "without exercises, the summary must come before the last section"
        )
    return problems


def toc_pages():
    """The book/*.md pages that the table of contents builds."""

    def files(node):
        if isinstance(node, dict):
            if "file" in node:
                yield node["file"]
            for value in node.values():
                yield from files(value)
        elif isinstance(node, list):
            for value in node:
                yield from files(value)

    toc = yaml.safe_load((ROOT / "_toc.yml").read_text(encoding="utf-8"))
    return [
        ROOT / f"{name}.md"
        for name in [toc["root"], *files(toc["parts"])]
        if name.startswith("book/")
    ]


CHAPTERS = sorted(BOOK.glob("ch[0-9]*.md"))


def chapter_labels():
    labels = set()
    for page in CHAPTERS:
        match = LABEL_LINE.match(
            page.read_text(encoding="utf-8").splitlines()[0]
        )
        if match:
            labels.add(match[1])
    return labels


@pytest.fixture(scope="module")
def entries():
    return parse_glossary(GLOSSARY.read_text(encoding="utf-8"))


def test_glossary_is_in_the_table_of_contents():
    assert GLOSSARY in toc_pages()


def test_glossary_has_at_least_60_entries(entries):
    assert len(entries) >= 60, len(entries)


def test_every_entry_has_both_languages_a_definition_and_a_chapter(entries):
    labels = chapter_labels()
    problems = [p for entry in entries for p in entry_problems(entry, labels)]
    assert not problems, "\n".join(problems)


def test_terms_are_unique(entries):
    terms = [term.lower() for entry in entries for term in entry.terms]
    assert len(terms) == len(set(terms)), sorted(
        t for t in terms if terms.count(t) > 1
    )


def test_every_entry_is_linked_from_a_page(entries):
    linked = set()
    for page in toc_pages():
        if page != GLOSSARY:
            linked |= term_targets(page.read_text(encoding="utf-8"))
    unlinked = [
        entry.terms[0]
        for entry in entries
        if not linked & {term.lower() for term in entry.terms}
    ]
    assert not unlinked, f"entries no page links with {{term}}: {unlinked}"


def test_every_term_link_has_an_entry(entries):
    # The build (-W -n) catches this too; this says which page, in a second.
    known = {term.lower() for entry in entries for term in entry.terms}
    missing = {
        f"{page.name}: {target}"
        for page in sorted(BOOK.glob("*.md"))
        for target in term_targets(page.read_text(encoding="utf-8"))
        if target not in known
    }
    assert not missing, sorted(missing)


@pytest.mark.parametrize("page", CHAPTERS, ids=lambda page: page.stem)
def test_chapter_has_a_korean_summary_before_its_exercises(page):
    problems = summary_problems(page.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_the_checks_can_fail():
    bad = parse_glossary(
        ":::{glossary}\n"
        "padding\n  **패딩**: Zeros added around the input.\n"
        "  Introduced in {ref}`ch99-x`.\n\n"
        "stride\n  **stride**: The step of the filter on its input.\n"
        "  Introduced in {ref}`ch01-layer-arithmetic`.\n\n"
        "pooling\n  **풀링**: Pools.\n"
        ":::\n"
    )
    labels = {"ch01-layer-arithmetic"}
    assert [e.terms for e in bad] == [["padding"], ["stride"], ["pooling"]]
    assert "not the label of a chapter" in entry_problems(bad[0], labels)[0]
    assert "no Korean term" in entry_problems(bad[1], labels)[0]
    assert "definition does not read" in entry_problems(bad[2], labels)[0]
    assert term_targets("a {term}`pads <Padding>`, {term}`stride\n`") == {
        "padding",
        "stride",
    }
    short = "## 한국어 요약\n\n- 합성곱\n\n## Exercises\n"
    assert "expected 6 to 10" in summary_problems(short)[0]
    lines = "".join(f"- 요약 {i}\n" for i in range(7))
    misplaced = f"## 한국어 요약\n\n{lines}\n## Summary\n\n## Exercises\n"
    assert "not '## Exercises'" in summary_problems(misplaced)[0]
    english = f"## 한국어 요약\n\n{lines}- in English\n\n## Exercises\n"
    assert "without Korean" in summary_problems(english)[0]
    labelled = f"## 한국어 요약\n\n{lines}\n(x-exercises)=\n## Exercises\n"
    assert summary_problems(labelled) == []
