"""checkov over infra/ (Bicep + secrets), the Dockerfile and the CI workflow, from its own environment (.tools/checkov).

checkov exits 0 when it cannot parse a file, so the gate also asserts zero parsing errors. Accepted findings live
in checkov-skips.toml with one reason each; anything else fails, and so does a skip that matches nothing.
"""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKOV = REPO_ROOT / ".tools" / "checkov" / "bin" / "checkov"
SKIPS = Path(__file__).with_name("checkov-skips.toml")
COMMON = ["--skip-download", "--compact", "--quiet", "-o", "json"]
RUNS = {
    "infra": ["-d", "infra", "--framework", "bicep", "secrets"],
    "dockerfile": ["-f", "Dockerfile", "--framework", "dockerfile"],
    "workflows": ["-d", ".github/workflows", "--framework", "github_actions"],
}


def _reports(stdout: str) -> list[dict[str, Any]]:
    data = json.loads(stdout)
    # One framework with findings -> one object; several -> a list; nothing to report -> an empty summary.
    if isinstance(data, dict):
        return [data] if "check_type" in data else []
    return list(data)


@pytest.fixture(scope="module")
def checkov_reports() -> dict[str, list[dict[str, Any]]]:
    """Run both scans once per session, side by side (checkov takes a few seconds to start)."""
    if not CHECKOV.exists():
        pytest.fail(
            f"checkov not found at {CHECKOV}: run `make tools` (it installs checkov into .tools/checkov)"
        )
    procs = {
        name: subprocess.Popen(
            [str(CHECKOV), *args, *COMMON],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, args in RUNS.items()
    }
    reports = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=110)
        # 0: all passed, 1: findings. Anything else is checkov failing to run.
        assert proc.returncode in (0, 1), f"checkov ({name}) exited {proc.returncode}: {err[-2000:]}"
        reports[name] = _reports(out)
    return reports


def _skips() -> list[dict[str, str]]:
    with SKIPS.open("rb") as f:
        return list(tomllib.load(f)["skip"])


def _failures(reports: dict[str, list[dict[str, Any]]]) -> list[tuple[str, str, str]]:
    return [
        (check["check_id"], check["resource"], check["file_path"])
        for runs in reports.values()
        for report in runs
        for check in report["results"]["failed_checks"]
    ]


def test_every_skip_has_a_reason() -> None:
    for skip in _skips():
        assert set(skip) == {"check", "resource", "reason"}, skip
        assert len(skip["reason"].split()) >= 8, f"{skip['check']}: give a real reason"


def test_checkov_parses_every_file(checkov_reports: dict[str, list[dict[str, Any]]]) -> None:
    # Given checkov's own Bicep parser (an older pycep than the project's)
    # Then it parsed everything it scanned, and it did scan resources and the Dockerfile.
    for name, runs in checkov_reports.items():
        for report in runs:
            assert report["summary"]["parsing_errors"] == 0, f"{name}: {report['summary']}"
    types = {r["check_type"] for runs in checkov_reports.values() for r in runs}
    assert {"bicep", "dockerfile", "github_actions"} <= types
    bicep = next(r for r in checkov_reports["infra"] if r["check_type"] == "bicep")
    assert bicep["summary"]["passed"] > 0


def test_no_failed_checks_beyond_the_documented_skips(
    checkov_reports: dict[str, list[dict[str, Any]]],
) -> None:
    allowed = {(s["check"], s["resource"]) for s in _skips()}
    failures = _failures(checkov_reports)
    unexpected = [f for f in failures if (f[0], f[1]) not in allowed]
    assert not unexpected, f"checkov findings not in {SKIPS.name}: {unexpected}"


def test_every_skip_still_matches_a_finding(checkov_reports: dict[str, list[dict[str, Any]]]) -> None:
    seen = {(f[0], f[1]) for f in _failures(checkov_reports)}
    stale = [s["check"] for s in _skips() if (s["check"], s["resource"]) not in seen]
    assert not stale, f"remove these entries from {SKIPS.name}, the finding is gone: {stale}"
