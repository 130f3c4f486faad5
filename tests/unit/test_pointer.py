"""`pointer` in a validation problem's errors: an RFC 6901 JSON Pointer in its URI-fragment form."""

from typing import Any
from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st

from user_service.presentation.http.problems import json_pointer


def resolve(document: Any, pointer: str) -> Any:
    """What a client does with the pointer (RFC 6901 §6 and §4), written apart from the code under test."""
    assert pointer.startswith("#")
    text = unquote(pointer[1:], errors="strict")
    if text == "":
        return document
    assert text.startswith("/")
    for token in text[1:].split("/"):
        name = token.replace("~1", "/").replace("~0", "~")
        document = document[int(name)] if isinstance(document, list) else document[name]
    return document


keys = st.text(max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
    max_leaves=12,
)


@st.composite
def documents_with_a_path(draw: st.DrawFn) -> tuple[Any, list[str | int]]:
    document = draw(st.dictionaries(keys, json_values, min_size=1, max_size=4))
    path: list[str | int] = []
    node: Any = document
    while isinstance(node, dict | list) and node and draw(st.booleans()):
        step: str | int = (
            draw(st.sampled_from(sorted(node)))
            if isinstance(node, dict)
            else draw(st.integers(0, len(node) - 1))
        )
        path.append(step)
        node = node[step]
    return document, path


@given(documents_with_a_path())
def test_a_pointer_leads_a_client_to_the_value(case: tuple[Any, list[str | int]]) -> None:
    document, path = case
    pointer = json_pointer(path)
    expected = document
    for step in path:
        expected = expected[step]
    assert resolve(document, pointer) == expected
    assert all(c.isascii() and c.isprintable() and c not in ' "<>\\^`{|}' for c in pointer), pointer


def test_pointers_as_rfc_9457_and_rfc_6901_spell_them() -> None:
    assert json_pointer([]) == "#"
    assert json_pointer(["username"]) == "#/username"
    assert json_pointer(["a/b", "m~n", 0]) == "#/a~1b/m~0n/0"
    assert json_pointer(["c%d", "x y", "é"]) == "#/c%25d/x%20y/%C3%A9"
