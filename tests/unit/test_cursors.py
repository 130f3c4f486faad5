"""Page cursors: what one encodes is what it decodes to, for its own listing only; anything else a 422."""

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest
from fastapi.exceptions import RequestValidationError
from hypothesis import given
from hypothesis import strategies as st

from user_service.application.ports import Order
from user_service.application.read_models import Position
from user_service.presentation.http import cursors

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
positions = st.builds(
    Position,
    st.datetimes(
        min_value=datetime(1900, 1, 1),  # noqa: DTZ001 - hypothesis bounds are naive; the values are UTC
        max_value=datetime(9999, 1, 1),  # noqa: DTZ001
        timezones=st.just(UTC),
    ),
    st.uuids().map(lambda u: UUID(int=u.int)),
)
listings = st.tuples(st.sampled_from(list(Order)), st.sampled_from([None, True, False]))


@given(positions, listings)
def test_a_cursor_decodes_to_its_position(position: Position, listing: tuple[Order, bool | None]) -> None:
    cursor = cursors.encode(position, *listing)
    assert len(cursor) == 47
    assert set(cursor) <= set(ALPHABET)
    assert cursors.decode(cursor, *listing) == position


@given(positions, listings, listings)
def test_a_cursor_serves_its_own_listing_only(
    position: Position, made_for: tuple[Order, bool | None], used_for: tuple[Order, bool | None]
) -> None:
    cursor = cursors.encode(position, *made_for)
    if used_for != made_for:
        with pytest.raises(RequestValidationError, match="another listing"):
            cursors.decode(cursor, *used_for)


@given(positions, listings, st.data())
def test_any_edit_of_a_cursor_is_refused(
    position: Position, listing: tuple[Order, bool | None], data: st.DataObject
) -> None:
    cursor = cursors.encode(position, *listing)
    at = data.draw(st.integers(0, len(cursor) - 1))
    char = data.draw(st.sampled_from(ALPHABET).filter(lambda c: c != cursor[at]))
    edited = data.draw(
        st.sampled_from(
            [
                cursor[:at] + char + cursor[at + 1 :],
                cursor[:at],
                cursor + char,
                cursor[:at] + cursor[at + 1 :],
            ]
        )
    )
    with pytest.raises(RequestValidationError) as refused:
        cursors.decode(edited, *listing)
    assert refused.value.errors()[0]["loc"] == ("query", "after")


def test_positions_keep_their_microseconds() -> None:
    at = datetime(2026, 11, 26, 17, 4, 26, 123456, tzinfo=UTC)
    position = Position(at, UUID(int=1))
    assert cursors.decode(cursors.encode(position, Order.DESC, False), Order.DESC, False).created_at == at
    before_1970 = Position(at - timedelta(days=365 * 60), UUID(int=2))
    assert cursors.decode(cursors.encode(before_1970, Order.ASC, None), Order.ASC, None) == before_1970
