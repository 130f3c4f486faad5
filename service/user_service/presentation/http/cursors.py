"""Page cursors: the opaque `after` of a `next` link (RFC 8288), naming where the next page starts.

A cursor holds the position of the last user of a page (creation time to the microsecond, and id) and
the listing it belongs to (`order`, `deleted`), and a check value over them: a cursor that was cut,
edited or made up is a 422 problem, never a page from an arbitrary place or a 500. The check is a keyed
BLAKE2b with a fixed key, not a secret: a cursor grants nothing a client cannot ask for by other means,
so it needs to be tamper-evident, not unforgeable.

    version (1) | order (1) | deleted (1: -1 none) | created_at µs since 1970 (8) | id (16) | check (8)

encoded base64url without padding: 47 characters.
"""

import base64
import binascii
import hashlib
import hmac
import struct
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode
from uuid import UUID

from fastapi import Query
from fastapi.exceptions import RequestValidationError
from pydantic.json_schema import SkipJsonSchema

from user_service.application.ports import Order
from user_service.application.read_models import Position

VERSION = 1
PATTERN = r"^[A-Za-z0-9_-]+$"
MAX_LENGTH = 64
_LAYOUT = struct.Struct(">BBbq16s")
_CHECK_SIZE = 8
_KEY = b"user-service page cursor"
_ORDERS = {Order.ASC: 0, Order.DESC: 1}
_FILTERS: dict[bool | None, int] = {None: -1, False: 0, True: 1}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
INVALID = "is not a cursor of this service: pass on the `after` of a `next` link as it is"
OTHER_LISTING = "is a cursor of another listing: keep the `order` and `deleted` of the link it came with"


After = Annotated[
    str | SkipJsonSchema[None],
    Query(
        description=(
            "Where the page starts: the opaque cursor of a `next` link (pass the link on as it is). "
            "Not with `offset`."
        ),
        max_length=MAX_LENGTH,
        pattern=PATTERN,
    ),
]


def _check(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECK_SIZE, key=_KEY).digest()


def encode(position: Position, order: Order, deleted: bool | None) -> str:
    micros = (position.created_at - _EPOCH) // _MICROSECOND
    payload = _LAYOUT.pack(VERSION, _ORDERS[order], _FILTERS[deleted], micros, position.id.bytes)
    return base64.urlsafe_b64encode(payload + _check(payload)).rstrip(b"=").decode()


def decode(cursor: str, order: Order, deleted: bool | None) -> Position:
    """The position `cursor` names, for a listing in `order` filtered by `deleted`; a 422 otherwise."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise _invalid(cursor, INVALID) from None
    payload, check = raw[:-_CHECK_SIZE], raw[-_CHECK_SIZE:]
    canonical = base64.urlsafe_b64encode(raw).rstrip(b"=").decode() == cursor  # not one bit besides
    if not canonical or len(payload) != _LAYOUT.size or not hmac.compare_digest(check, _check(payload)):
        raise _invalid(cursor, INVALID)
    version, order_code, filter_code, micros, id_bytes = _LAYOUT.unpack(payload)
    if version != VERSION:
        raise _invalid(cursor, INVALID)
    if (order_code, filter_code) != (_ORDERS[order], _FILTERS[deleted]):
        raise _invalid(cursor, OTHER_LISTING)
    try:
        created_at = _EPOCH + micros * _MICROSECOND
    except OverflowError:
        raise _invalid(cursor, INVALID) from None
    return Position(created_at, UUID(bytes=id_bytes))


def _invalid(cursor: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", "after"), "msg": message, "input": cursor}]
    )


def offset_with_after(offset: int) -> RequestValidationError:
    message = "cannot be combined with after: the cursor says where the page starts"
    return RequestValidationError(
        [{"type": "value_error", "loc": ("query", "offset"), "msg": message, "input": offset}]
    )


def next_link(path: str, position: Position, *, limit: int, order: Order, deleted: bool | None) -> str:
    """The `Link` field value of the page that `position` ends: `<…?…&after=…>; rel="next"`."""
    query = [("limit", str(limit)), ("order", order.value)]
    if deleted is not None:
        query.append(("deleted", "true" if deleted else "false"))
    query.append(("after", encode(position, order, deleted)))
    return f'<{path}?{urlencode(query)}>; rel="next"'
