"""Value objects of a user: each checks its own rule when it is made and never changes after."""

import re
import unicodedata
from dataclasses import dataclass

from user_service.domain.errors import InvalidValue

USERNAME_MAX = 32
NAME_MAX = 64
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*", re.ASCII)
_NAME_PUNCTUATION = frozenset(" -'’.")
MARKS_PER_LETTER = 4  # enough for every script's stacked vowels and tones; not a tower of 63
_JOINERS = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner
# Letters (category L) that render as nothing: the Hangul fillers.
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0")


@dataclass(frozen=True, slots=True)
class Username:
    """1 to 32 ASCII letters, digits or underscores, starting with a letter; stored as given."""

    value: str

    def __post_init__(self) -> None:
        if not 1 <= len(self.value) <= USERNAME_MAX:
            raise InvalidValue("username", f"must be 1 to {USERNAME_MAX} characters long")
        if _USERNAME.fullmatch(self.value) is None:
            raise InvalidValue(
                "username", "must start with a letter and hold only ASCII letters, digits and underscores"
            )

    @property
    def key(self) -> str:
        """The form uniqueness is decided on: usernames differing only in case are the same."""
        return self.value.lower()


@dataclass(frozen=True, slots=True)
class Name:
    """A first, middle or last name.

    Normalised to NFC (so "José" typed with a combining accent and with a precomposed é are one name),
    then trimmed; then 1 to 64 characters (a letter with its combining marks counts once): letters of any
    script, each with at most `MARKS_PER_LETTER` combining marks, spaces, hyphens, apostrophes (' and ’)
    and periods, with one letter at least. A zero-width non-joiner or joiner (U+200C, U+200D, which
    Persian and the Indic scripts need) may stand between two letters. Letters that show nothing (the
    Hangul fillers) are not letters.
    """

    value: str
    field: str = "name"

    def __post_init__(self) -> None:
        value = unicodedata.normalize("NFC", self.value).strip()
        object.__setattr__(self, "value", value)
        # Characters as a reader counts them: a letter with its combining marks is one.
        length = sum(unicodedata.category(char)[0] != "M" for char in value)
        if not 1 <= length <= NAME_MAX:
            raise InvalidValue(self.field, f"must be 1 to {NAME_MAX} characters long after trimming")
        has_letter, marks, previous = False, 0, ""
        for i, char in enumerate(value):
            category = unicodedata.category(char)[0]
            if category == "L" and char not in _INVISIBLE_LETTERS:
                has_letter, marks = True, 0
            elif category == "M" and previous == "L":
                marks += 1
                if marks > MARKS_PER_LETTER:
                    raise InvalidValue(self.field, f"at most {MARKS_PER_LETTER} combining marks per letter")
                category = "L"  # a letter with its marks, for what follows
            elif char in _JOINERS and previous == "L" and _letter_at(value, i + 1):
                pass
            elif char not in _NAME_PUNCTUATION:
                raise InvalidValue(
                    self.field,
                    "may hold only letters (with their combining marks), spaces, hyphens, apostrophes and "
                    f"periods, not {char!r}",
                )
            previous = category
        if not has_letter:
            raise InvalidValue(self.field, "must contain at least one letter")


def _letter_at(value: str, i: int) -> bool:
    return i < len(value) and unicodedata.category(value[i])[0] == "L" and value[i] not in _INVISIBLE_LETTERS


@dataclass(frozen=True, slots=True)
class FullName:
    first: Name
    last: Name
    middle: Name | None = None

    @classmethod
    def of(cls, first: str, last: str, middle: str | None = None) -> "FullName":
        return cls(
            first=Name(first, "first_name"),
            last=Name(last, "last_name"),
            middle=None if middle is None else Name(middle, "middle_name"),
        )
