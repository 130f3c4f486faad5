"""The OpenAPI document: lint-clean by Spectral's OpenAPI ruleset (no error, no warning), and every
operation described, with an example of each body it answers and the header fields it uses."""

from typing import Any

from fastapi import FastAPI

from tests.contracts.speccheck import spectral


def operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in spec["paths"].items() for method, op in ops.items()]


def test_spectral_oas_ruleset_finds_nothing(app: FastAPI) -> None:
    results = spectral(app.openapi())
    assert results == [], "\n".join(
        f"{r['severity']} {r['code']} {'.'.join(map(str, r['path']))}: {r['message']}" for r in results
    )


def test_every_operation_is_described_with_an_example_of_every_body(app: FastAPI) -> None:
    spec = app.openapi()
    for path, method, op in operations(spec):
        assert op.get("description", "").strip(), (path, method)
        for status, response in op["responses"].items():
            for media_type, content in response.get("content", {}).items():
                assert "example" in content, (path, method, status, media_type)


def test_the_conditional_idempotency_and_paging_fields_are_documented(app: FastAPI) -> None:
    paths = app.openapi()["paths"]

    def parameters(path: str, method: str) -> set[str]:
        return {p["name"] for p in paths[path][method].get("parameters", []) if p["in"] == "header"}

    def headers(path: str, method: str, status: str) -> dict[str, Any]:
        return dict(paths[path][method]["responses"][status].get("headers", {}))

    assert parameters("/users", "post") == {"Idempotency-Key"}
    assert "pattern" in next(p for p in paths["/users"]["post"]["parameters"])["schema"]
    assert set(headers("/users", "post", "201")) == {"Location", "ETag", "X-Consistency-Token"}
    assert set(headers("/users", "get", "200")) == {"Link"}
    assert not headers("/users", "get", "200")["Link"]["required"]
    assert "after" in {p["name"] for p in paths["/users"]["get"]["parameters"]}
    assert parameters("/users", "get") == {"X-Consistency-Token"}
    for path in ("/users/{user_id}", "/users/@{username}"):
        assert parameters(path, "get") == {"If-None-Match", "X-Consistency-Token"}
        assert "ETag" in headers(path, "get", "200")
        assert "ETag" in headers(path, "get", "304")
        assert "content" not in paths[path]["get"]["responses"]["304"]
    for path, method in (
        ("/users/{user_id}/username", "put"),
        ("/users/{user_id}/full-name", "put"),
        ("/users/{user_id}", "delete"),
    ):
        assert parameters(path, method) == {"If-Match", "If-None-Match"}
        assert {"200", "412"} <= set(paths[path][method]["responses"])
        assert headers(path, method, "200")["ETag"]["required"]
        assert not headers(path, method, "200")["X-Consistency-Token"]["required"]
    for path, method in (
        ("/users", "post"),
        ("/users/{user_id}/username", "put"),
        ("/users/{user_id}/full-name", "put"),
    ):
        assert "415" in paths[path][method]["responses"]


def test_the_document_says_where_it_is_served_and_who_keeps_it(app: FastAPI) -> None:
    spec = app.openapi()
    assert spec["servers"] == [{"url": "/", "description": "This service, where it serves this document."}]
    assert spec["info"]["contact"]["name"]
    assert {t["name"] for t in spec["tags"]} == {tag for _, _, op in operations(spec) for tag in op["tags"]}
    assert "/asyncapi.json" in spec["info"]["description"]
