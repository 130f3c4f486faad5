"""Schemathesis fuzzes the whole API from its own OpenAPI document, in-process over ASGI: valid and
invalid input for every operation, on unknown and on existing users, and every answer must be what the
document promises (no 5xx; documented status, content type, headers and schema; nosniff)."""

import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import make_settings
from tests.support.evidence import report
from user_service.infrastructure.db.database import Database
from user_service.main.app import create_app

CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
]
# Up to this many cases per operation, generation mode and target (an unknown user, an existing one):
# 7 operations take input, 4 of them a user id, so about 1,350 cases a run.
EXAMPLES = 75
MIN_CASES = 1000


@dataclass
class Run:
    cases: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    # One example per distinct failure: (operation, what failed) -> the report with its curl command.
    failures: dict[tuple[str, str], str] = field(default_factory=dict)

    def record(self, label: str, exc: BaseException) -> None:
        text = str(exc)
        kinds = re.findall(r"^- (.+)$", text, flags=re.MULTILINE) or [f"{type(exc).__name__}: {text[:200]}"]
        for kind in kinds:
            self.failures.setdefault((label, kind), text[:2500])


@pytest.fixture
def fuzzed_app(database_url: str, clean_db: Database) -> Iterator[FastAPI]:
    """An app of its own: schemathesis runs its lifespan (and so its pool) on its own event loop."""
    yield create_app(make_settings(database_url, telemetry_enabled=False))
    shutdown_lifespans()


def fuzz(
    run: Run, operation: schemathesis.APIOperation, mode: GenerationMode, label: str, **fixed: Any
) -> None:
    """All the cases of one operation in one mode, every failure recorded (none stops the run)."""

    @settings(
        max_examples=EXAMPLES,
        derandomize=True,  # the same cases on every run
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    def each(case: schemathesis.Case) -> None:
        run.cases += 1
        response = case.call(timeout=10)
        run.statuses[response.status_code] = run.statuses.get(response.status_code, 0) + 1
        try:
            case.validate_response(response, checks=CHECKS)
            assert response.headers.get("x-content-type-options") == ["nosniff"], "no nosniff"
        except (AssertionError, BaseExceptionGroup) as exc:
            run.record(label, exc)

    try:
        each()
    except Unsatisfiable:
        # Only an operation left with no input to generate has no invalid input either.
        fixed_path = fixed.get("path_parameters", {})
        free = [p for p in operation.path_parameters if p.name not in fixed_path]
        assert mode is GenerationMode.NEGATIVE, label
        assert not [*free, *operation.query, *operation.headers, *operation.body], label


@pytest.mark.timeout(240)
def test_fuzzing_the_whole_api_finds_nothing(fuzzed_app: FastAPI) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzzed_app)
    create = schema["/users"]["POST"]
    body = {"username": f"fuzz{uuid.uuid4().hex[:8]}", "first_name": "Fuzz", "last_name": "Target"}
    existing = create.Case(body=body, media_type="application/json").call().json()["id"]

    run = Run()
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz(run, operation, mode, f"{operation.label} [{mode.value}]")
            if "user_id" in operation.path_parameters:
                label = f"{operation.label} [{mode.value}, existing user]"
                fuzz(run, operation, mode, label, path_parameters={"user_id": existing})

    report(
        "fuzz",
        operations=len(operations),
        cases=run.cases,
        statuses=dict(sorted(run.statuses.items())),
        distinct_failures=len(run.failures),
    )
    assert run.failures == {}, "\n\n".join(
        f"== {op}: {kind}\n{text}" for (op, kind), text in run.failures.items()
    )
    assert run.cases >= MIN_CASES
