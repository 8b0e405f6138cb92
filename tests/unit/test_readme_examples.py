"""How README examples are found and how their answers match (tests/readme_examples.py)."""

from __future__ import annotations

import pytest

from tests.readme_examples import (
    Example,
    ReadmeError,
    answer_matches,
    exported,
    json_matches,
    last_json_value,
    parse,
    read,
    text_matches,
)


def test_the_readme_parses_and_every_block_has_a_kind() -> None:
    examples = read()
    kinds = {e.kind for e in examples}
    assert kinds == {"run", "python", "answer", "start", "ci", "synopsis", "settings"}
    assert all(e.lang for e in examples), [e.where() for e in examples if not e.lang]


def test_a_block_without_a_directive_is_refused() -> None:
    with pytest.raises(ReadmeError, match=r"README\.md:3: a fenced block without"):
        parse("Some text\n\n```sh\necho hi\n```\n")


def test_unknown_kinds_flags_and_stray_answers_are_refused() -> None:
    with pytest.raises(ReadmeError, match="unknown example kind"):
        parse("<!-- example: maybe -->\n```sh\nls\n```\n")
    with pytest.raises(ReadmeError, match="takes no flag"):
        parse("<!-- example: run eventually -->\n```sh\nls\n```\n")
    with pytest.raises(ReadmeError, match="must follow a run or python block"):
        parse("<!-- example: ci -->\n```sh\nx\n```\n<!-- example: answer -->\n```text\ny\n```\n")
    with pytest.raises(ReadmeError, match="never closed"):
        parse("<!-- example: run -->\n```sh\nls\n")


def test_a_directive_with_flag_and_note() -> None:
    (run, answer) = parse("<!-- example: run refused -->\n```sh\ncurl x\n```\n"
                          "<!-- example: answer eventually (a note) -->\n```json\n{}\n```\n")
    assert (run.kind, run.flag, run.lang, run.text, run.line) == (
        "run", "refused", "sh", "curl x", 2)
    assert (answer.kind, answer.flag, answer.lang) == ("answer", "eventually", "json")


@pytest.mark.parametrize(("shown", "actual", "matches"), [
    ({"a": 1}, {"a": 1, "b": 2}, True),           # extra keys are abridged
    ({"a": 1, "c": 3}, {"a": 1}, False),          # a shown key must be there
    ({"a": 1}, {"a": 2}, False),
    ({"a": True}, {"a": 1}, False),               # True is not 1
    ({"n": None}, {"n": None}, True),
    ({"id": "ten_…"}, {"id": "ten_abc"}, True),
    ({"id": "ten_…"}, {"id": "key_abc"}, False),
    ({"id": "…"}, {"id": 17}, True),              # "…" alone matches any value
    ({"x": "a…c…e"}, {"x": "abcde"}, True),
    ({"x": "a…c…e"}, {"x": "abdde"}, False),
    ([1, 2], [1, 2, 3], False),                   # lists keep their length
    ([{"m": "x"}], [{"m": "x", "n": 1}], True),
    ("exact", "exact ", False),
])
def test_json_answers(shown: object, actual: object, matches: bool) -> None:
    assert json_matches(shown, actual) is matches


def test_text_answers_match_line_by_line_with_blank_runs_as_one() -> None:
    assert text_matches("ten_… inv_… MTR-… … EUR", "ten_1\tinv_2\tMTR-2026-000001\t47.56 EUR\n")
    assert not text_matches("ten_… inv_… … EUR", "ten_1\tinv_2\t47.56 USD")
    assert not text_matches("a\nb", "a\nb\nc")
    assert text_matches("%PDF-", "%PDF-\n")
    assert not text_matches("%PDF-", "<html>")


def test_the_last_of_several_json_values_is_the_answer() -> None:
    assert last_json_value('{"a": 1}\n{"b": 2}\n') == {"b": 2}
    with pytest.raises(ValueError, match="printed no JSON"):
        last_json_value("   ")
    answer = Example("answer", None, "json", '{"b": 2}', 1)
    assert answer_matches(answer, '{"a": 1} {"b": 2}')
    assert not answer_matches(answer, '{"b": 2} {"a": 1}')
    assert not answer_matches(answer, "Internal Server Error")


def test_exported_settings_drop_comments_and_quotes() -> None:
    block = ('export METERLY_A=x   # a comment\nexport METERLY_B="{\'k\': 1}"\n'
             "export OTHER=1\n./ops/run.sh")
    assert exported(block) == {"METERLY_A": "x", "METERLY_B": "{'k': 1}"}
