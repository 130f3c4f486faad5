from datetime import UTC, datetime
from uuid import uuid4

import pytest

from user_service.domain import errors
from user_service.domain.events import FullNameChanged, UserCreated, UserDeleted, UsernameChanged
from user_service.domain.ids import uuid7
from user_service.domain.user import User
from user_service.domain.values import FullName, Name, Username


def make_user(username: str = "alice") -> User:
    return User.register(uuid4(), Username(username), FullName.of("Alice", "Smith"))


@pytest.mark.parametrize("value", ["a", "Alice_1", "z" * 32, "A1_b2"])
def test_valid_usernames(value: str) -> None:
    assert Username(value).value == value


@pytest.mark.parametrize(
    "value", ["", "1abc", "_abc", "a" * 33, "al ice", "alice!", "ålice", "alice\x00", "al-ice", "alice\n"]
)
def test_invalid_usernames(value: str) -> None:
    with pytest.raises(errors.InvalidValue) as info:
        Username(value)
    assert info.value.field == "username"


def test_username_key_ignores_case_but_value_is_kept() -> None:
    assert Username("Alice").key == Username("aLICE").key == "alice"
    assert Username("Alice").value == "Alice"


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("  Ann ", "Ann"),
        ("Jean-Luc", "Jean-Luc"),
        ("O'Brien", "O'Brien"),
        ("D’Angelo", "D’Angelo"),
        ("J. R. R.", "J. R. R."),
        ("Zoë", "Zoë"),
        ("Zoe\u0308", "Zoë"),  # stored in NFC
        ("Jos\u0065\u0301", "José"),
        ("  " + "x" * 64 + "  ", "x" * 64),  # the length is the trimmed one
        ("x\u0301" * 64, "x\u0301" * 64),  # no precomposed x́: 128 code points, 64 characters
        ("مه\u200cرو", "مه\u200cرو"),  # a zero-width non-joiner between letters (Persian)
        ("Иван", "Иван"),
        ("李小龙", "李小龙"),
        ("x" * 64, "x" * 64),
    ],
)
def test_valid_names_are_trimmed(raw: str, stored: str) -> None:
    assert Name(raw, "first_name").value == stored


@pytest.mark.parametrize(
    "raw",
    [
        *["", "   ", "x" * 65, "---", "'.", "Ann1", "Ann\x00", "An\tn", "Ann@", "😀"],
        "\u3164",  # the Hangul filler: a letter by category that shows nothing
        "A\u3164",
        "\u115f\u1160",
        "a" + "\u0301" * 63,  # a letter with 63 combining marks
        "x" + "\u0301" * 5,  # x has no precomposed form: five marks stay five
        "\u0301a",  # a mark with no letter before it
        "a \u0301",
        "\u200cAnn",  # a joiner not between letters
        "Ann\u200c",
        "An \u200cn",
    ],
)
def test_invalid_names(raw: str) -> None:
    with pytest.raises(errors.InvalidValue) as info:
        Name(raw, "last_name")
    assert info.value.field == "last_name"


def test_register_records_created() -> None:
    user = make_user()
    assert [type(e) for e in user.events] == [UserCreated]
    assert user.events[0].user_id == user.id


def test_change_username_records_old_and_new() -> None:
    user = make_user("alice")
    user.pull_events()
    user.change_username(Username("bob"))
    (event,) = user.pull_events()
    assert isinstance(event, UsernameChanged)
    assert (event.old, event.new) == ("alice", "bob")
    assert user.username.value == "bob"


def test_unchanged_values_record_nothing() -> None:
    user = make_user("alice")
    user.pull_events()
    user.change_username(Username("alice"))
    user.change_full_name(FullName.of("Alice", "Smith"))
    assert user.events == ()


def test_change_full_name_clears_middle_name_when_absent() -> None:
    user = User.register(uuid4(), Username("a"), FullName.of("A", "B", "Mid"))
    user.pull_events()
    user.change_full_name(FullName.of("A", "B"))
    assert user.full_name.middle is None
    assert [type(e) for e in user.pull_events()] == [FullNameChanged]


def test_delete_then_no_more_changes() -> None:
    user = make_user()
    user.pull_events()
    user.delete(datetime.now(UTC))
    assert user.deleted
    assert [type(e) for e in user.pull_events()] == [UserDeleted]
    with pytest.raises(errors.UserIsDeleted):
        user.change_username(Username("other"))
    with pytest.raises(errors.UserIsDeleted):
        user.change_full_name(FullName.of("X", "Y"))
    with pytest.raises(errors.UserIsDeleted):
        user.delete(datetime.now(UTC))
    assert user.events == ()


def test_each_change_and_only_a_change_counts_a_version_and_numbers_its_event() -> None:
    user = make_user("alice")
    assert user.version == 1
    user.change_username(Username("alice"))  # no change
    user.change_username(Username("bob"))
    user.change_full_name(FullName.of("Alice", "Smith"))  # no change
    user.change_full_name(FullName.of("Al", "Ice"))
    user.delete(datetime.now(UTC))
    assert user.version == 4
    assert [(type(e), e.version) for e in user.pull_events()] == [
        (UserCreated, 1),
        (UsernameChanged, 2),
        (FullNameChanged, 3),
        (UserDeleted, 4),
    ]
    with pytest.raises(errors.UserIsDeleted):
        user.change_username(Username("carol"))
    assert user.version == 4


def test_uuid7_is_version_7_variant_rfc_and_time_ordered() -> None:
    ids = [uuid7() for _ in range(50)]
    assert all(i.version == 7 and i.variant == "specified in RFC 4122" for i in ids)
    assert len(set(ids)) == 50
    stamps = [i.int >> 80 for i in ids]
    assert stamps == sorted(stamps)
