"""What `pip install .` puts in the wheel, and what the image's wheel leaves out.

Users and the image get Postbus from a wheel, not from the source tree, so these build real wheels with
setuptools (no build isolation: the suite does not reach a package index) and read them. The image's wheel is
built from exactly the paths the Dockerfile copies, without the emulators, and the worker is imported from it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from tests.infra.dockerfile import copied

REPO_ROOT = Path(__file__).resolve().parents[2]
SOURCE_FOLDERS = ("postbus", "worker", "producers", "emulators")


def _build_wheel(source: Path, out: Path, scratch: Path) -> Path:
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
            str(source),
        ],
        check=True,
        capture_output=True,
        env={"PATH": "", "TMPDIR": str(scratch), "HOME": str(scratch)},
    )
    (wheel,) = out.glob("postbus-*.whl")
    return wheel


def _context(sources: list[str], into: Path) -> Path:
    """A copy of ``sources`` (paths relative to the checkout) in ``into``, links kept as links.

    Wheels are built from a copy because setuptools builds in the source tree and reuses a stale
    ``build/lib`` there, which would ship modules that no longer exist.
    """
    for source in sources:
        path = REPO_ROOT / source
        if path.is_dir():
            # symlinks=True copies postbus/emulators as the link it is; without emulators/ beside it, it dangles.
            shutil.copytree(path, into / source, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, into / source)
    return into


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    context = _context(["pyproject.toml", "README.md", *SOURCE_FOLDERS], tmp_path_factory.mktemp("source"))
    wheel = _build_wheel(context, tmp_path_factory.mktemp("wheel"), tmp_path_factory.mktemp("build"))
    with zipfile.ZipFile(wheel) as archive:
        return set(archive.namelist())


@pytest.fixture(scope="module")
def image_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel the Dockerfile builds: from a build context holding only what the Dockerfile copies."""
    context = _context(list(copied()), tmp_path_factory.mktemp("context"))
    assert (context / "postbus" / "emulators").is_symlink()
    assert not (context / "postbus" / "emulators").exists()
    return _build_wheel(
        context, tmp_path_factory.mktemp("image-wheel"), tmp_path_factory.mktemp("image-build")
    )


_IMPORT_EVERYTHING = textwrap.dedent(
    """
    import contextlib, importlib, io, json, pkgutil, sys
    # The suite's own environment has Postbus installed in editable mode, whose import hook would find the
    # checkout's postbus.emulators; the image has no such hook, so it goes.
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
    sys.path_hooks[:] = [h for h in sys.path_hooks if not getattr(h, "__module__", "").startswith("__editable__")]
    sys.path_importer_cache.clear()
    import postbus

    report = {"postbus": postbus.__file__, "imported": [], "emulators": None}
    for package in ("postbus.worker", "postbus.producers", "postbus.telemetry"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            importlib.import_module(info.name)
            report["imported"].append(info.name)
    try:
        importlib.import_module("postbus.emulators")
    except ModuleNotFoundError as exc:
        report["emulators"] = exc.name
    from postbus.cli import main
    with contextlib.redirect_stdout(io.StringIO()) as help_text:
        report["worker_help"] = main(["worker", "--help"])
    report["worker_help_text"] = help_text.getvalue()
    report["emulator_command"] = main(["emulator", "--help"])
    sys.stdout.write(json.dumps(report))
    """
)


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


def test_the_image_wheel_has_no_emulators_and_everything_else(
    image_wheel: Path, wheel_names: set[str]
) -> None:
    with zipfile.ZipFile(image_wheel) as archive:
        names = set(archive.namelist())
    assert not [name for name in names if name.startswith("postbus/emulators/")]
    # Nothing else went missing with them
    assert {name for name in wheel_names if not name.startswith("postbus/emulators/")} - names <= {
        name for name in wheel_names if ".dist-info/" in name
    }


def test_the_worker_imports_and_runs_from_the_image_wheel(image_wheel: Path, tmp_path: Path) -> None:
    # Given the image's wheel unpacked where nothing else of ours is importable
    site = tmp_path / "site"
    with zipfile.ZipFile(image_wheel) as archive:
        archive.extractall(site)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("POSTBUS_")}
    # When every module of the worker, the producers and telemetry is imported, and the CLI is run
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_EVERYTHING],
        cwd=tmp_path,  # not the checkout, whose postbus/ would be found first
        env=env | {"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # Then they all came from the wheel and none needed the emulators
    assert report["postbus"].startswith(str(site))
    assert "postbus.worker.runner" in report["imported"]
    assert "postbus.worker.ops.azure_checks" in report["imported"]
    assert "postbus.producers.publisher" in report["imported"]
    assert report["emulators"] == "postbus.emulators"
    assert report["worker_help"] == 0
    assert "Usage: postbus worker" in report["worker_help_text"]
    # And asking the image for the emulators is one clear line, not a traceback
    assert report["emulator_command"] == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("postbus: error: the emulators are not installed here")


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
