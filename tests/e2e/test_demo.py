"""``postbus demo`` as a script runs it: piped, no terminal, so it must not wait for Enter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_a_small_demo_serves_both_consoles_accounts_for_everything_and_exits(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSTBUS_")} | {"POSTBUS_ENV_FILE": ""}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "postbus.cli",
            "demo",
            "--events",
            "10",
            "--workers",
            "1",
            "--quota",
            "6000",
            "--output",
            str(tmp_path),
        ],
        env=env,
        stdin=subprocess.DEVNULL,  # no terminal: the consoles close after the summary
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Pipeline console: http://127.0.0.1:" in done.stdout
    assert "/_emulator/ui/" in done.stdout
    assert "All 11 events accounted for" in done.stdout
    # Part of the spike went through the ingest API, and the accounting above includes it.
    assert "of them through the ingest API" in done.stdout
    assert "Traceback" not in done.stderr
    [run] = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(list((run / "mailbox").glob("*.eml"))) == 10
