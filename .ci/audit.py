"""Fail on a known vulnerability in the locked dependencies when a fixed version exists (pip-audit)."""

import json
import subprocess
import sys
import tempfile

with tempfile.TemporaryDirectory() as tmp:
    requirements = f"{tmp}/requirements.txt"
    report = f"{tmp}/audit.json"
    subprocess.run(
        ["uv", "export", "--locked", "--all-groups", "--no-hashes", "--no-emit-project", "-o", requirements],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    result = subprocess.run(
        ["pip-audit", "-r", requirements, "--disable-pip", "--no-deps", "-f", "json", "-o", report],
        check=False,
    )
    if result.returncode not in (0, 1):  # 1 means "vulnerabilities found"; anything else is a failure
        sys.exit(f"pip-audit failed with exit code {result.returncode}")
    with open(report) as f:
        dependencies = json.load(f)["dependencies"]

fixable = [
    f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {', '.join(vuln['fix_versions'])})"
    for dep in dependencies
    for vuln in dep.get("vulns", [])
    if vuln.get("fix_versions")
]
unfixed = sum(1 for dep in dependencies for vuln in dep.get("vulns", []) if not vuln.get("fix_versions"))
print(f"{len(dependencies)} locked dependencies audited; {len(fixable)} fixable, {unfixed} without a fix")
if fixable:
    sys.exit("known vulnerabilities with a fix available:\n" + "\n".join(fixable))
