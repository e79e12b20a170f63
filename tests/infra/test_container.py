"""The worker image (Dockerfile, .dockerignore) and the azd manifest (azure.yaml).

Docker does not run here, so the image is checked as text (and by checkov's Dockerfile framework in
test_checkov.py): multi-stage, slim, non-root, a stdlib health check, the worker as entry point.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, args = stripped.partition(" ")
            result.append((keyword.upper(), args.strip()))
    return result


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _instructions():
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, args))
    return stages


def test_dockerfile_is_multi_stage_on_a_slim_python_311() -> None:
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", image), image
    runtime = stages[-1]
    assert any(k == "COPY" and a.startswith("--from=builder") for k, a in runtime)


def test_compiler_lives_only_in_the_builder_stage() -> None:
    *builders, runtime = _stages()
    assert any("gcc" in a for stage in builders for k, a in stage if k == "RUN")
    assert not any(re.search(r"\b(gcc|build-essential|apt-get)\b", a) for k, a in runtime if k == "RUN")


def test_image_runs_as_a_non_root_user() -> None:
    users = [a for k, a in _stages()[-1] if k == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    if user.isdigit():
        assert int(user) >= 1000


def test_healthcheck_probes_healthz_with_the_standard_library() -> None:
    [healthcheck] = [a for k, a in _stages()[-1] if k == "HEALTHCHECK"]
    assert "CMD" in healthcheck
    command = json.loads(healthcheck[healthcheck.index("CMD") + 3 :].strip())
    assert command[:2] == ["python", "-c"]
    assert "urllib.request" in command[2]
    assert "/healthz" in command[2]
    assert "127.0.0.1" in command[2]
    compile(command[2], "<healthcheck>", "exec")  # the probe is valid Python
    assert "curl" not in healthcheck
    assert "wget" not in healthcheck


def test_worker_is_the_entry_point_and_8080_is_exposed() -> None:
    runtime = dict(_stages()[-1])
    entry = json.loads(runtime["ENTRYPOINT"]) + json.loads(runtime.get("CMD", "[]"))
    assert entry == ["postbus", "worker"]
    assert runtime["EXPOSE"].split() == ["8080"]


def test_builder_installs_the_project_with_pip() -> None:
    runs = [a for k, a in _stages()[0] if k == "RUN"]
    assert any(re.search(r"pip install[^&]* \.(\s|$)", a) for a in runs)
    copied = " ".join(a for k, a in _stages()[0] if k == "COPY")
    for needed in ("pyproject.toml", "README.md", "postbus", "worker", "producers", "emulators"):
        assert needed in copied, needed


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    patterns = {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for required in ("**/.git", "**/.venv", "**/.tools", "**/.env", "**/.azure", "tests"):
        assert required in patterns, required
    # The Dockerfile COPYs these; ignoring them would break the build.
    for kept in ("pyproject.toml", "README.md", "postbus", "worker", "producers", "emulators"):
        assert kept not in patterns


def test_azure_yaml_names_the_worker_service_and_the_infra_path() -> None:
    text = (REPO_ROOT / "azure.yaml").read_text()
    body = "\n".join(
        line.rstrip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
    )
    assert re.search(r"^name: postbus$", body, re.M)
    assert re.search(r"^infra:\n(  \S.*\n)*  provider: bicep$", body, re.M)
    assert re.search(r"^infra:\n(  \S.*\n)*  path: infra$", body, re.M)
    service = re.search(r"^services:\n  worker:\n((?:    .*\n?)+)", body, re.M)
    assert service, "azure.yaml has no services.worker"
    worker = service.group(1)
    assert re.search(r"^    project: \.$", worker, re.M)
    assert re.search(r"^    language: py(thon)?$", worker, re.M)
    assert re.search(r"^    host: containerapp$", worker, re.M)
    assert re.search(r"^      path: Dockerfile$", worker, re.M)
    # azd matches the service to the app by this tag.
    assert "'azd-service-name': 'worker'" in (REPO_ROOT / "infra" / "modules" / "worker.bicep").read_text()
