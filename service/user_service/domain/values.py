"""Value objects of a user: each checks its own rule when it is made and never changes after."""

import re
import unicodedata
from dataclasses import dataclass

from user_service.domain.errors import InvalidValue

USERNAME_MAX = 32
NAME_MAX = 64
_USERNAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*", re.ASCII)
_NAME_PUNCTUATION = frozenset(" -'’.")


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

    Trimmed, then 1 to 64 letters of any script, combining marks, spaces, hyphens, apostrophes
    (' and ’) and periods, with one letter at least.
    """

    value: str
    field: str = "name"

    def __post_init__(self) -> None:
        value = self.value.strip()
        object.__setattr__(self, "value", value)
        if not 1 <= len(value) <= NAME_MAX:
            raise InvalidValue(self.field, f"must be 1 to {NAME_MAX} characters long after trimming")
        has_letter = False
        for char in value:
            category = unicodedata.category(char)
            if category[0] == "L":
                has_letter = True
            elif category[0] != "M" and char not in _NAME_PUNCTUATION:
                raise InvalidValue(
                    self.field,
                    f"may hold only letters, combining marks, spaces, hyphens, apostrophes and periods, "
                    f"not {char!r}",
                )
        if not has_letter:
            raise InvalidValue(self.field, "must contain at least one letter")


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
