"""The contract documents checked by their ecosystems' own tools (tests/contracts/speccheck, Node):
Spectral's `spectral:oas` ruleset for the OpenAPI document, the AsyncAPI initiative's parser for the
AsyncAPI document. Missing Node or packages: a skip locally, a failure in CI."""

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from tests.support.required import require_tool, unavailable

SPECCHECK_DIR = Path(__file__).resolve().parent / "speccheck"
NPM_HINT = "run npm ci --prefix tests/contracts/speccheck"


def _node_with(package: str) -> str:
    node = require_tool("node", install="Node.js 20, e.g. apt-get install nodejs")
    if not (SPECCHECK_DIR / "node_modules" / package / "package.json").is_file():
        unavailable(f"{package} is not installed ({NPM_HINT})")
    return node


def _run(args: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=SPECCHECK_DIR, capture_output=True, text=True, timeout=180, check=False, **kwargs
    )


def spectral(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every result of `spectral lint` with the oas ruleset (spectral.yaml): errors, warnings, infos."""
    node = _node_with("@stoplight/spectral-cli")
    cli = SPECCHECK_DIR / "node_modules" / "@stoplight" / "spectral-cli" / "dist" / "index.js"
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "openapi.json"
        path.write_text(json.dumps(document))
        completed = _run(
            [node, str(cli), "lint", str(path), "-r", "spectral.yaml", "--format", "json", "--quiet"]
        )
    assert completed.stdout.strip(), f"spectral said nothing:\n{completed.stderr}"
    results: list[dict[str, Any]] = json.loads(completed.stdout)
    return results


def asyncapi_diagnostics(path: Path) -> dict[str, Any]:
    """What @asyncapi/parser says of the document at `path`: {parsed, diagnostics: [{code, severity}]}."""
    node = _node_with("@asyncapi/parser")
    completed = _run([node, "asyncapi.mjs", str(path)])
    assert completed.returncode == 0, f"the AsyncAPI parser failed:\n{completed.stderr}"
    result: dict[str, Any] = json.loads(completed.stdout)
    return result
