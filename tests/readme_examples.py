"""The README's examples as data: every fenced block, what kind of example it is, and how an
answer shown in the README is matched against what a command printed.

Each fenced block in README.md is preceded by a directive, an HTML comment that GitHub does
not show::

    <!-- example: KIND [FLAG] [(note)] -->

KIND is one of:

- ``run``: a shell block, run in order by tests/integration/test_readme.py in one shell
  session (variables carry over) against a running Meterly. The flag ``refused`` marks a
  block that shows an error answer on purpose; elsewhere an HTTP error fails the example.
- ``python``: a Python block, run in order with the shell's exported variables.
- ``answer``: the answer of the block before it (``json`` or ``text``). The flag
  ``eventually`` re-runs that block (which must only read) until the answer matches.
- ``start``: the command that starts Meterly; the README test starts exactly it.
- ``ci``: the test command; ``.ci/run`` must run exactly it.
- ``synopsis``: ``meterly`` command lines; each command named must exist.
- ``settings``: ``export METERLY_...`` lines; each must be a setting, and the README test
  uses them (see there).

A block without a directive fails the README test: every example is run or checked.

Answers: ``…`` stands for whatever differs from run to run. In JSON, an object in the answer
matches an object holding at least its keys with matching values, a list matches a list of
the same length element by element, the string ``"…"`` matches any value, and a string with
``…`` in it matches a string with anything in place of each ``…``. In text, lines match one
by one, runs of blanks count as one blank, and ``…`` matches anything within its line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"
KINDS = ("run", "python", "answer", "start", "ci", "synopsis", "settings")
FLAGS = {"run": ("refused",), "answer": ("eventually",)}
ELLIPSIS = "…"
_DIRECTIVE = re.compile(r"^<!-- example: (?P<kind>[a-z]+)(?: (?P<flag>[a-z]+))?"
                        r"(?: \((?P<note>[^)]*)\))? -->$")
_FENCE = re.compile(r"^```(?P<lang>[a-z]*)$")


class ReadmeError(ValueError):
    """The README's examples are not written as this module expects."""


@dataclass(frozen=True)
class Example:
    kind: str
    flag: str | None
    lang: str
    text: str
    line: int  # of the opening fence, 1-based

    def where(self) -> str:
        return f"README.md:{self.line}"


def parse(markdown: str) -> list[Example]:
    lines = markdown.splitlines()
    examples: list[Example] = []
    i = 0
    while i < len(lines):
        fence = _FENCE.match(lines[i])
        if fence is None:
            i += 1
            continue
        directive = _DIRECTIVE.match(lines[i - 1]) if i > 0 else None
        if directive is None:
            raise ReadmeError(f"README.md:{i + 1}: a fenced block without an "
                              "'<!-- example: KIND -->' line before it")
        kind, flag = directive["kind"], directive["flag"]
        if kind not in KINDS:
            raise ReadmeError(f"README.md:{i}: unknown example kind {kind!r}")
        if flag is not None and flag not in FLAGS.get(kind, ()):
            raise ReadmeError(f"README.md:{i}: {kind!r} takes no flag {flag!r}")
        end = i + 1
        while end < len(lines) and lines[end] != "```":
            end += 1
        if end == len(lines):
            raise ReadmeError(f"README.md:{i + 1}: the block is never closed")
        examples.append(Example(kind, flag, fence["lang"], "\n".join(lines[i + 1:end]), i + 1))
        i = end + 1
    for before, example in zip([None, *examples], examples, strict=False):
        if example.kind == "answer" and (before is None
                                         or before.kind not in ("run", "python")):
            raise ReadmeError(f"{example.where()}: an answer must follow a run or python block")
    return examples


def read() -> list[Example]:
    return parse(README.read_text(encoding="utf-8"))


def _pattern(shown: str) -> re.Pattern[str]:
    return re.compile(".*?".join(re.escape(part) for part in shown.split(ELLIPSIS)), re.S)


def json_matches(shown: Any, actual: Any) -> bool:
    if shown == ELLIPSIS:
        return True
    if isinstance(shown, str):
        return isinstance(actual, str) and _pattern(shown).fullmatch(actual) is not None
    if isinstance(shown, dict):
        return isinstance(actual, dict) and all(
            key in actual and json_matches(value, actual[key]) for key, value in shown.items())
    if isinstance(shown, list):
        return isinstance(actual, list) and len(shown) == len(actual) and all(
            json_matches(s, a) for s, a in zip(shown, actual, strict=True))
    # Numbers, booleans and null: equal, and of the same kind (True is not 1).
    return type(shown) is type(actual) and bool(shown == actual)


def _blank_runs(line: str) -> str:
    return " ".join(line.split())


def text_matches(shown: str, actual: str) -> bool:
    want = [_blank_runs(line) for line in shown.strip().splitlines()]
    got = [_blank_runs(line) for line in actual.strip().splitlines()]
    return len(want) == len(got) and all(
        _pattern(w).fullmatch(g) is not None for w, g in zip(want, got, strict=True))


def last_json_value(output: str) -> Any:
    """The last JSON value a command printed (several may be printed one after another)."""
    decoder = json.JSONDecoder()
    values, i = [], 0
    text = output.strip()
    while i < len(text):
        value, i = decoder.raw_decode(text, i)
        values.append(value)
        while i < len(text) and text[i].isspace():
            i += 1
    if not values:
        raise ValueError("the command printed no JSON")
    return values[-1]


def answer_matches(answer: Example, output: str) -> bool:
    if answer.lang == "json":
        try:
            actual = last_json_value(output)
        except ValueError:
            return False
        return json_matches(json.loads(answer.text), actual)
    if answer.lang == "text":
        return text_matches(answer.text, output)
    raise ReadmeError(f"{answer.where()}: an answer is a json or text block")


def exported(settings_block: str) -> dict[str, str]:
    """``export NAME=value`` lines of a settings block (a trailing comment is not a value)."""
    found = {}
    for line in settings_block.splitlines():
        m = re.match(r"^export (METERLY_[A-Z0-9_]+)=(.*?)(?:\s+#.*)?$", line.strip())
        if m:
            found[m[1]] = m[2].strip().strip('"')
    return found
