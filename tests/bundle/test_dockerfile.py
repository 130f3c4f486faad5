"""The Dockerfile and .dockerignore, read as Docker reads them; the builder stage's uv steps run for real."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from observability.bundle import REPO, compose_config
from tests.support.required import require_tool

from .support import DOCKERFILE, DOCKERIGNORE


@dataclass
class Stage:
    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def parse_dockerfile(text: str) -> list[Stage]:
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword, args = keyword.upper(), args.strip()
        if keyword == "FROM":
            parts = args.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(parts[0], name))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, args))
    return stages


@pytest.fixture(scope="module")
def stages() -> dict[str, Stage]:
    parsed = parse_dockerfile(DOCKERFILE.read_text(encoding="utf-8"))
    assert [stage.name for stage in parsed] == ["uv", "builder", "runtime"]
    return {stage.name: stage for stage in parsed}


def copy_sources(args: str) -> tuple[list[str], str, str | None]:
    """(sources, destination, --from stage) of a COPY."""
    words = shlex.split(args)
    source_stage = None
    while words and words[0].startswith("--"):
        flag = words.pop(0)
        if flag.startswith("--from="):
            source_stage = flag.removeprefix("--from=")
    return words[:-1], words[-1], source_stage


def test_every_base_image_is_pinned(stages: dict[str, Stage]) -> None:
    assert re.fullmatch(r"ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+", stages["uv"].base)
    for name in ("builder", "runtime"):
        assert re.fullmatch(r"python:3\.11\.\d+-slim(-[a-z]+)?", stages[name].base), stages[name].base
    assert stages["builder"].base == stages["runtime"].base, (
        "the venv's interpreter path must exist at run time"
    )


def test_the_builder_syncs_the_locked_environment_without_dev_dependencies(stages: dict[str, Stage]) -> None:
    syncs = [run for run in stages["builder"].all("RUN") if "uv sync" in run]
    assert len(syncs) == 2
    for run in syncs:
        assert "--locked" in run, run
        assert "--no-dev" in run, run
    assert "--no-install-project" in syncs[0]
    env = " ".join(stages["builder"].all("ENV"))
    assert "UV_PROJECT_ENVIRONMENT=/app/.venv" in env
    assert "UV_PYTHON_DOWNLOADS=never" in env
    assert any(args.startswith("--from=uv ") for args in stages["builder"].all("COPY"))


def test_the_runtime_stage_holds_the_venv_and_the_code_only(stages: dict[str, Stage]) -> None:
    runtime = stages["runtime"]
    copies = [copy_sources(args) for args in runtime.all("COPY")]
    assert (["/app/.venv"], "/app/.venv", "builder") in copies
    from_context = sorted(src for sources, _, stage in copies if stage is None for src in sources)
    assert from_context == ["alembic.ini", "migrations", "service"]
    for run in runtime.all("RUN"):
        assert not re.search(r"\b(apt-get|apt|pip|uv|gcc|make)\b", run.replace("-m compileall", "")), run


def test_the_runtime_stage_runs_as_a_non_root_user(stages: dict[str, Stage]) -> None:
    users = stages["runtime"].all("USER")
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    assert user.isdigit(), "a numeric user lets orchestrators check runAsNonRoot"


def test_the_runtime_environment(stages: dict[str, Stage]) -> None:
    env = " ".join(stages["runtime"].all("ENV"))
    for setting in ("LOG_FORMAT=json", "PYTHONDONTWRITEBYTECODE=1", "PATH=/app/.venv/bin:$PATH", "PORT=5000"):
        assert setting in env, setting
    assert stages["runtime"].all("CMD") == ['["user-service"]']
    assert stages["runtime"].all("EXPOSE") == ["5000"]


def test_the_healthcheck_uses_python_only(stages: dict[str, Stage]) -> None:
    (check,) = stages["runtime"].all("HEALTHCHECK")
    options, _, command = check.partition(" CMD ")
    assert "--interval=" in options
    assert "--timeout=" in options
    argv = json.loads(command)
    assert argv[:2] == ["python", "-c"]
    assert "urllib.request" in argv[2]
    assert "/healthcheck" in argv[2]
    compile(argv[2], "<healthcheck>", "exec")


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    excluded = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for line in patterns:
        negate = line.startswith("!")
        pattern = line.removeprefix("!").rstrip("/")
        if pattern.startswith("**/"):
            hit = any(fnmatch.fnmatch(part, pattern[3:]) for part in parts)
        else:
            hit = any(fnmatch.fnmatch(prefix, pattern) for prefix in prefixes)
        if hit:
            excluded = not negate
    return excluded


def test_the_build_context_holds_what_the_dockerfile_copies(stages: dict[str, Stage]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = {
        src
        for stage in stages.values()
        for args in stage.all("COPY")
        for src in copy_sources(args)[0]
        if copy_sources(args)[2] is None
    }
    assert sources == {"pyproject.toml", "uv.lock", "README.md", "service", "migrations", "alembic.ini"}
    for source in sources:
        path = REPO / source
        assert path.exists(), f"the Dockerfile copies {source}, which is not in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*.py") if "__pycache__" not in p.parts]
        assert files, source
        for file in files:
            relative = file.relative_to(REPO).as_posix()
            assert not _dockerignore_excludes(relative, patterns), f".dockerignore drops {relative}"
    for unwanted in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "loadtest/locustfile.py", ".env"):
        assert _dockerignore_excludes(unwanted, patterns), f"{unwanted} would be sent to the builder"


def test_compose_runs_the_image_command(stages: dict[str, Stage]) -> None:
    services = compose_config()["services"]
    assert services["api"]["command"][0] == "user-service"
    assert services["migrate"]["command"][0] == "user-service"


def _copy_into(source: str, target: Path) -> None:
    """COPY <source> <target> from the repository (a folder's contents go into the target folder)."""
    if (REPO / source).is_dir():
        shutil.copytree(REPO / source, target, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(REPO / source, target / source if target.is_dir() else target)


def _replay_builder(builder: Stage, app: Path, uv: str) -> None:
    """The builder stage's ENV, COPY and RUN (uv sync) steps, with /app at `app`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env.update(UV_PYTHON=sys.executable, UV_PYTHON_DOWNLOADS="never")
    for keyword, args in builder.instructions:
        if keyword == "ENV":
            for assignment in shlex.split(args):
                name, _, value = assignment.partition("=")
                if name not in ("UV_COMPILE_BYTECODE", "UV_LINK_MODE"):  # (they only cost time here)
                    env[name] = value.replace("/app", str(app))
        elif keyword == "COPY":
            sources, dest, source_stage = copy_sources(args)
            for source in sources if source_stage is None else []:
                _copy_into(source, app / dest)
        elif keyword == "RUN":
            command = re.sub(r"--mount=\S+\s*", "", args).split()
            assert command[:2] == ["uv", "sync"], command
            result = subprocess.run(
                [uv, *command[1:]], cwd=app, env=env, capture_output=True, text=True, timeout=300, check=False
            )
            assert result.returncode == 0, result.stderr


def test_the_builder_steps_install_a_working_service(stages: dict[str, Stage], tmp_path: Path) -> None:
    """Replays the builder stage (its COPY and `uv sync` steps) in a folder laid out like the image's /app,
    then adds what the runtime stage copies, and runs the installed service from it."""
    uv = require_tool("uv", install="pip install uv")
    app = tmp_path / "app"
    app.mkdir()
    _replay_builder(stages["builder"], app, uv)
    # The runtime stage adds the code next to the environment.
    for source in ("migrations", "alembic.ini"):
        _copy_into(source, app / source)
    venv = app / ".venv"
    assert (venv / "bin" / "user-service").is_file()
    dev_only = {"pytest", "mypy", "ruff", "hypothesis", "schemathesis", "locust"}
    installed = {p.name.split("-")[0].lower() for p in venv.glob("lib/python*/site-packages/*.dist-info")}
    assert not installed & dev_only
    probe = (
        "from user_service.infrastructure.db import migrations; "
        "print(migrations.MIGRATIONS_DIR); import user_service.main.app"
    )
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", probe],
        cwd="/",
        env={"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    migrations_dir = Path(result.stdout.strip())
    assert migrations_dir == app / "migrations"
    assert any(migrations_dir.glob("versions/*.py"))
    result = subprocess.run(
        [str(venv / "bin" / "user-service"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "migrate" in result.stdout
