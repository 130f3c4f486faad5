from uuid import UUID, uuid4

import pytest

from tests.fakes import FakeReader, FakeUnitOfWork
from user_service.application.commands.change_full_name import ChangeFullName, ChangeFullNameHandler
from user_service.application.commands.change_username import ChangeUsername, ChangeUsernameHandler
from user_service.application.commands.create_user import CreateUser, CreateUserHandler
from user_service.application.commands.delete_user import DeleteUser, DeleteUserHandler
from user_service.application.errors import IdempotencyKeyReused, PreconditionFailed, UserNotFound
from user_service.application.ports import Order
from user_service.application.preconditions import Precondition, Versions
from user_service.application.queries.get_user import GetUser, GetUserHandler
from user_service.application.queries.get_user_by_username import GetUserByUsername, GetUserByUsernameHandler
from user_service.application.queries.list_users import ListUsers, ListUsersHandler
from user_service.domain import errors
from user_service.domain.events import FullNameChanged, UserCreated, UserDeleted, UsernameChanged


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


async def create(uow: FakeUnitOfWork, username: str = "alice", **kw: str) -> UUID:
    view = await CreateUserHandler(uow)(
        CreateUser(username=username, first_name="Alice", last_name="Smith", **kw)
    )
    return view.id


async def test_create_user_commits_once_and_records_created(uow: FakeUnitOfWork) -> None:
    user_id = uuid4()
    view = await CreateUserHandler(uow)(
        CreateUser(
            username="alice", first_name=" Alice ", last_name="Smith", middle_name="Ann", user_id=user_id
        )
    )
    assert view.id == user_id
    assert (view.username, view.first_name, view.middle_name, view.deleted) == (
        "alice",
        "Alice",
        "Ann",
        False,
    )
    assert uow.commits == 1
    assert [type(e) for e in uow.published] == [UserCreated]


async def test_create_user_makes_a_uuid7_when_no_id_given(uow: FakeUnitOfWork) -> None:
    view = await CreateUserHandler(uow)(CreateUser(username="alice", first_name="A", last_name="B"))
    assert view.id.version == 7


async def test_create_user_rejects_invalid_values_before_any_work(uow: FakeUnitOfWork) -> None:
    with pytest.raises(errors.InvalidValue):
        await CreateUserHandler(uow)(CreateUser(username="9lives", first_name="A", last_name="B"))
    assert uow.commits == 0
    assert uow.published == []


async def test_a_retried_create_is_answered_as_first_and_does_nothing(uow: FakeUnitOfWork) -> None:
    command = CreateUser(username="alice", first_name="Alice", last_name="Smith", idempotency_key="k1")
    first = await CreateUserHandler(uow)(command)
    await ChangeUsernameHandler(uow)(ChangeUsername(first.id, "bob"))
    again = await CreateUserHandler(uow)(command)
    assert again == first  # the first answer: the user as created, at version 1
    assert (len(uow.store), uow.commits) == (1, 2)
    with pytest.raises(IdempotencyKeyReused):
        await CreateUserHandler(uow)(CreateUser("carol", "Carol", "Smith", idempotency_key="k1"))
    other = await CreateUserHandler(uow)(CreateUser("carol", "Carol", "Smith", idempotency_key="k2"))
    assert other.id != first.id
    assert [type(e) for e in uow.published] == [UserCreated, UsernameChanged, UserCreated]


def test_a_create_is_fingerprinted_by_all_its_fields() -> None:
    base = CreateUser("alice", "Alice", "Smith", idempotency_key="k")
    assert base.fingerprint() == CreateUser("alice", "Alice", "Smith", idempotency_key="other").fingerprint()
    variants = [
        CreateUser("alicE", "Alice", "Smith"),
        CreateUser("alice", "Alicia", "Smith"),
        CreateUser("alice", "Alice", "Smyth"),
        CreateUser("alice", "Alice", "Smith", middle_name="Ann"),
        CreateUser("alice", "Alice", "Smith", user_id=uuid4()),
    ]
    assert len({base.fingerprint(), *(v.fingerprint() for v in variants)}) == 6


async def test_taken_username_is_a_conflict_and_records_nothing(uow: FakeUnitOfWork) -> None:
    await create(uow, "alice")
    with pytest.raises(errors.UsernameTaken):
        await create(uow, "ALICE")
    assert [type(e) for e in uow.published] == [UserCreated]


async def test_change_username(uow: FakeUnitOfWork) -> None:
    user_id = await create(uow)
    view = await ChangeUsernameHandler(uow)(ChangeUsername(user_id=user_id, username="bob"))
    assert view.username == "bob"
    assert isinstance(uow.published[-1], UsernameChanged)


async def test_change_username_of_missing_user_is_not_found(uow: FakeUnitOfWork) -> None:
    with pytest.raises(UserNotFound):
        await ChangeUsernameHandler(uow)(ChangeUsername(user_id=uuid4(), username="bob"))
    assert uow.commits == 0


async def test_change_full_name_and_clear_middle(uow: FakeUnitOfWork) -> None:
    user_id = await create(uow, middle_name="Ann")
    view = await ChangeFullNameHandler(uow)(ChangeFullName(user_id, "Alicia", "Jones"))
    assert (view.first_name, view.last_name, view.middle_name) == ("Alicia", "Jones", None)
    assert isinstance(uow.published[-1], FullNameChanged)


async def test_delete_then_changes_conflict(uow: FakeUnitOfWork) -> None:
    user_id = await create(uow)
    view = await DeleteUserHandler(uow)(DeleteUser(user_id))
    assert view.deleted
    assert view.representation().get("username") is None
    assert isinstance(uow.published[-1], UserDeleted)
    commits = uow.commits
    with pytest.raises(errors.UserIsDeleted):
        await DeleteUserHandler(uow)(DeleteUser(user_id))
    with pytest.raises(errors.UserIsDeleted):
        await ChangeUsernameHandler(uow)(ChangeUsername(user_id, "bob"))
    with pytest.raises(errors.UserIsDeleted):
        await ChangeFullNameHandler(uow)(ChangeFullName(user_id, "A", "B"))
    assert uow.commits == commits


async def test_a_change_applies_only_to_the_version_it_was_made_for(uow: FakeUnitOfWork) -> None:
    user_id = await create(uow)
    stale = Precondition(if_match=Versions(frozenset({2, 3})))
    with pytest.raises(PreconditionFailed):
        await ChangeUsernameHandler(uow)(ChangeUsername(user_id, "bob", stale))
    with pytest.raises(PreconditionFailed):
        await DeleteUserHandler(uow)(
            DeleteUser(user_id, Precondition(if_none_match=Versions(frozenset({1}))))
        )
    assert (uow.commits, len(uow.published)) == (1, 1)
    current = Precondition(if_match=Versions(frozenset({1})))
    view = await ChangeFullNameHandler(uow)(ChangeFullName(user_id, "Al", "Ice", precondition=current))
    assert view.version == 2
    with pytest.raises(PreconditionFailed):
        await ChangeFullNameHandler(uow)(ChangeFullName(user_id, "Al", "Ice", precondition=current))
    await DeleteUserHandler(uow)(DeleteUser(user_id, Precondition(if_match=Versions(every=True))))
    with pytest.raises(PreconditionFailed):  # `*`: a live user
        await DeleteUserHandler(uow)(DeleteUser(user_id, Precondition(if_match=Versions(every=True))))


async def test_deleted_username_is_free_again(uow: FakeUnitOfWork) -> None:
    user_id = await create(uow, "alice")
    await DeleteUserHandler(uow)(DeleteUser(user_id))
    assert await create(uow, "Alice") != user_id


async def test_queries(uow: FakeUnitOfWork) -> None:
    first = await create(uow, "alice")
    second = await create(uow, "bob")
    await DeleteUserHandler(uow)(DeleteUser(second))
    reader = FakeReader(uow.store)
    assert (await GetUserHandler(reader)(GetUser(second))).deleted
    assert (await GetUserByUsernameHandler(reader)(GetUserByUsername("ALICE"))).id == first
    with pytest.raises(UserNotFound):
        await GetUserByUsernameHandler(reader)(GetUserByUsername("bob"))
    with pytest.raises(UserNotFound):
        await GetUserHandler(reader)(GetUser(uuid4()))
    listed = await ListUsersHandler(reader)(ListUsers(order=Order.DESC))
    assert [v.id for v in listed.users] == [second, first]
    assert listed.next is None
    live = await ListUsersHandler(reader)(ListUsers(deleted=False))
    assert [v.id for v in live.users] == [first]
    page = await ListUsersHandler(reader)(ListUsers(limit=1))
    assert [v.id for v in page.users] == [first]
    assert page.next is not None
    rest = await ListUsersHandler(reader)(ListUsers(limit=1, after=page.next))
    assert ([v.id for v in rest.users], rest.next) == ([second], None)
