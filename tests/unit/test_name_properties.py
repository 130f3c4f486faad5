"""The rules of a name, as properties over generated text (hypothesis)."""

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from user_service.domain.errors import InvalidValue
from user_service.domain.values import MARKS_PER_LETTER, NAME_MAX, Name

FILLERS = "\u115f\u1160\u3164\uffa0"
letters = st.characters(categories=["Lu", "Ll", "Lo", "Lt"], exclude_characters=FILLERS)
marks = st.characters(categories=["Mn"])
anything = st.text(min_size=0, max_size=80)
words = st.lists(st.text(letters, min_size=1, max_size=8), min_size=1, max_size=6).map(" ".join)


def stored(raw: str) -> str | None:
    try:
        return Name(raw, "first_name").value
    except InvalidValue:
        return None


def characters(value: str) -> int:
    return sum(unicodedata.category(c)[0] != "M" for c in value)


@settings(max_examples=400)
@given(anything)
def test_whatever_is_accepted_is_nfc_trimmed_bounded_and_has_a_visible_letter(raw: str) -> None:
    value = stored(raw)
    if value is None:
        return
    assert value == unicodedata.normalize("NFC", value)
    assert value == value.strip()
    assert 1 <= characters(value) <= NAME_MAX
    assert any(unicodedata.category(c)[0] == "L" and c not in FILLERS for c in value)


@given(words)
def test_a_name_and_its_decomposed_form_are_one_name(name: str) -> None:
    nfc, nfd = stored(unicodedata.normalize("NFC", name)), stored(unicodedata.normalize("NFD", name))
    assert nfc == nfd


@given(
    words.filter(lambda w: characters(unicodedata.normalize("NFC", w)) <= NAME_MAX),
    st.text(" \t\n", max_size=5),
)
def test_letters_and_spaces_are_valid_and_padding_is_trimmed(name: str, pad: str) -> None:
    assert stored(pad + name + pad) == unicodedata.normalize("NFC", name).strip()


@given(st.text(letters, min_size=NAME_MAX + 1, max_size=NAME_MAX + 20))
def test_more_than_the_limit_is_refused(name: str) -> None:
    assert stored(name) is None


@given(letters, st.lists(marks, min_size=MARKS_PER_LETTER + 1, max_size=MARKS_PER_LETTER + 40))
def test_too_many_marks_on_one_letter_are_refused(letter: str, stack: list[str]) -> None:
    raw = letter + "".join(stack)
    if sum(unicodedata.category(c)[0] == "M" for c in unicodedata.normalize("NFC", raw)) > MARKS_PER_LETTER:
        assert stored(raw) is None


@given(
    st.text(letters, min_size=1, max_size=10),
    st.text(letters, min_size=1, max_size=10),
    st.sampled_from("\u200c\u200d"),
)
def test_a_joiner_between_letters_is_kept_and_elsewhere_refused(left: str, right: str, joiner: str) -> None:
    assert stored(left + joiner + right) == unicodedata.normalize("NFC", left + joiner + right)
    for misplaced in (joiner + left, left + joiner, left + " " + joiner + right, left + joiner + " " + right):
        assert stored(misplaced) is None


@pytest.mark.parametrize("filler", list(FILLERS))
@given(st.text(" ", max_size=3))
def test_fillers_alone_are_no_name(filler: str, spaces: str) -> None:
    assert stored(filler + spaces + filler) is None
