"""The consistency token in the contract: documented on every read and write, validated, and sent only
where a replica may serve reads (tests/scaleout runs the API with one)."""

import httpx

READS = [("/users", "get"), ("/users/{user_id}", "get"), ("/users/@{username}", "get")]
WRITES = [
    ("/users", "post", "201"),
    ("/users/{user_id}/username", "put", "200"),
    ("/users/{user_id}/full-name", "put", "200"),
    ("/users/{user_id}", "delete", "200"),
]


async def test_the_openapi_documents_the_token_on_reads_and_writes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path, method in READS:
        parameters = {p["name"]: p for p in paths[path][method]["parameters"]}
        token = parameters["X-Consistency-Token"]
        assert token["in"] == "header"
        assert not token.get("required", False)
        assert token["description"]
    for path, method, status in WRITES:
        headers = paths[path][method]["responses"][status]["headers"]
        assert headers["X-Consistency-Token"]["schema"]["type"] == "string"
        assert headers["X-Consistency-Token"]["description"]


async def test_a_malformed_token_is_422_naming_the_header(client: httpx.AsyncClient) -> None:
    response = await client.get("/users/", headers={"X-Consistency-Token": "not-a-position"})
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error["location"] == "header"
    assert error["field"] == "X-Consistency-Token"


async def test_without_a_replica_writes_send_no_token_and_reads_accept_one(client: httpx.AsyncClient) -> None:
    created = await client.post("/users/", json={"username": "t", "first_name": "T", "last_name": "K"})
    assert created.status_code == 201
    assert "x-consistency-token" not in created.headers
    read = await client.get(f"/users/{created.json()['id']}", headers={"X-Consistency-Token": "0/16B3748"})
    assert read.status_code == 200
