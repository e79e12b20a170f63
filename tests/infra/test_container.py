"""The worker image (Dockerfile, .dockerignore, requirements.lock).

Docker does not run here, so the image is checked as text (and by checkov's Dockerfile framework in
test_checkov.py): multi-stage, slim and pinned by digest, installed from the hashed lock file, non-root,
a stdlib health check, the worker as entry point, and no emulators. test_packaging.py builds the wheel the
image builds and imports the worker from it.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.infra.dockerfile import DOCKERFILE, copied, stages

REPO_ROOT = Path(__file__).resolve().parents[2]
LOCK = REPO_ROOT / "requirements.lock"


def test_dockerfile_is_multi_stage_on_a_slim_python_311_pinned_by_digest() -> None:
    found = stages()
    assert len(found) >= 2
    images = {stage[0][1].split()[0] for stage in found}
    for image in images:
        assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?@sha256:[0-9a-f]{64}", image), image
    # Both stages run on the same base, so the venv built in one runs in the other.
    assert len(images) == 1
    runtime = found[-1]
    assert any(k == "COPY" and a.startswith("--from=builder") for k, a in runtime)


def test_compiler_lives_only_in_the_builder_stage() -> None:
    *builders, runtime = stages()
    assert any("gcc" in a for stage in builders for k, a in stage if k == "RUN")
    assert not any(re.search(r"\b(gcc|build-essential|apt-get)\b", a) for k, a in runtime if k == "RUN")


def test_image_runs_as_a_non_root_user() -> None:
    users = [a for k, a in stages()[-1] if k == "USER"]
    assert users, "no USER in the runtime stage"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}
    if user.isdigit():
        assert int(user) >= 1000


def test_healthcheck_probes_healthz_with_the_standard_library() -> None:
    [healthcheck] = [a for k, a in stages()[-1] if k == "HEALTHCHECK"]
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
    runtime = dict(stages()[-1])
    entry = json.loads(runtime["ENTRYPOINT"]) + json.loads(runtime.get("CMD", "[]"))
    assert entry == ["postbus", "worker"]
    assert runtime["EXPOSE"].split() == ["8080"]


def test_builder_installs_the_lock_by_hash_then_the_project_without_dependencies() -> None:
    builder = stages()[0]
    copies = [a for k, a in builder if k == "COPY"]
    runs = [a for k, a in builder if k == "RUN"]
    # The lock goes in first, alone, so its layer is cached until the lock changes
    assert copies[0] == "requirements.lock ./"
    [locked] = [a for a in runs if "requirements.lock" in a]
    assert "--require-hashes" in locked
    assert (
        builder.index(("COPY", copies[0]))
        < builder.index(("RUN", locked))
        < builder.index(("COPY", copies[1]))
    )
    # Then the project as a wheel, built with the base image's own setuptools and installed without dependencies
    [project] = [a for a in runs if "pip wheel" in a]
    assert "--no-build-isolation" in project
    assert "--no-deps" in project.split("pip wheel", 1)[1].split("&&", 1)[0]
    assert re.search(r"pip install [^&]*--no-deps [^&]*postbus-\*\.whl", project)


def test_the_image_leaves_the_emulators_out() -> None:
    # postbus/emulators is a link to ../emulators; without that folder the link dangles and setuptools skips it.
    sources = copied()
    assert not any(path.startswith("emulators") for path in sources)
    assert {"pyproject.toml", "README.md", "postbus", "worker", "producers", "requirements.lock"} <= set(
        sources
    )
    assert (REPO_ROOT / "postbus" / "emulators").is_symlink()
    assert "emulators" in _ignored()


def _ignored() -> set[str]:
    return {
        line.strip()
        for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }


def _locked() -> dict[str, str]:
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", LOCK.read_text(), re.M)
    return {canonicalize_name(name): version for name, version in pins}


def test_the_lock_pins_every_dependency_within_pyproject_and_hashes_each() -> None:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    locked = _locked()
    for line in project["dependencies"]:
        requirement = Requirement(line)
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"{name}=={locked[name]} does not satisfy {requirement.specifier}: run `make lock`"
        )
    # Every pin carries hashes (pip's --require-hashes refuses the file otherwise)
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text().split("\n", 2)[2])
    assert len(entries) == len(locked)
    for entry in entries:
        assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_the_lock_says_how_to_regenerate_it_for_the_image_platform() -> None:
    assert "#    make lock" in LOCK.read_text().splitlines()[1]
    makefile = (REPO_ROOT / "Makefile").read_text()
    target = makefile[makefile.index("\nlock:") :].split("\n\n", 1)[0]
    # Resolved for the image (CPython 3.11 on manylinux x86_64), not for whatever machine runs `make lock`
    assert "--generate-hashes" in target
    assert "--python-version 3.11" in target
    assert "--python-platform x86_64-manylinux" in target
    assert "python:3.11-" in DOCKERFILE.read_text()


def test_dockerignore_keeps_the_context_small_and_secret_free() -> None:
    patterns = _ignored()
    for required in ("**/.git", "**/.venv", "**/.tools", "**/.env", "**/.azure", "tests", "emulators"):
        assert required in patterns, required
    # The Dockerfile COPYs these; ignoring them would break the build.
    for kept in ("requirements.lock", "pyproject.toml", "README.md", "postbus", "worker", "producers"):
        assert kept not in patterns
