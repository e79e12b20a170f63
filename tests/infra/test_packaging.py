"""What `pip install .` puts in the wheel: one top-level package, every template and data file.

The image (and every user) gets Postbus from the wheel, not from the source tree, so this builds the
real wheel with setuptools (no build isolation: the suite does not reach a package index) and reads it.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ("postbus", "worker", "producers", "emulators")


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--wheel-dir",
            str(out),
            str(REPO_ROOT),
        ],
        check=True,
        capture_output=True,
        # setuptools writes build/ and *.egg-info beside the sources; keep the checkout clean.
        env={"PATH": "", "TMPDIR": str(build), "HOME": str(build)},
    )
    (wheel,) = out.glob("postbus-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


def test_the_wheel_installs_one_top_level_package_named_postbus(wheel_names: set[str]) -> None:
    tops = {name.split("/", 1)[0] for name in wheel_names if not name.split("/", 1)[0].endswith(".dist-info")}
    assert tops == {"postbus"}
    assert "postbus/worker/runner.py" in wheel_names
    assert "postbus/producers/publisher.py" in wheel_names
    assert "postbus/emulators/servicebus/broker.py" in wheel_names


def test_the_wheel_ships_every_template_and_data_file(wheel_names: set[str]) -> None:
    # A template folder that package-data misses (order.confirmation/ is not a package) would be absent
    # from the image only, and every message of that type would be dead-lettered in Azure.
    expected = set()
    for folder in SOURCE_FOLDERS:
        for path in (REPO_ROOT / folder).rglob("*"):
            if path.is_dir() or path.suffix in {".py", ".pyc"} or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(REPO_ROOT).as_posix()
            expected.add(relative if folder == "postbus" else f"postbus/{relative}")
    missing = sorted(expected - wheel_names)
    assert not missing, f"{len(missing)} file(s) missing from the wheel, e.g. {missing[:5]}"


def test_no_module_imports_the_source_folders_by_their_top_level_names() -> None:
    # `import worker` works from a checkout (the folder is there) but not once installed.
    offenders = []
    for folder in ("postbus", "worker", "producers", "emulators", "tests", "bench"):
        for path in (REPO_ROOT / folder).rglob("*.py"):
            if path.is_symlink() or any(p.is_symlink() for p in path.parents):
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                stripped = line.strip()
                for name in ("worker", "producers", "emulators"):
                    if stripped.startswith((f"from {name}.", f"from {name} ", f"import {name}")):
                        offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {stripped}")
    assert not offenders, offenders
