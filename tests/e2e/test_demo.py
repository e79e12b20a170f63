"""``postbus demo`` as a script runs it: piped, no terminal, so it must not wait for Enter."""

from __future__ import annotations

import os
import re
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
    # The emulated ACS reported on each of the 10 emails and the worker wrote it into the run's record.
    reported = {name: int(count) for name, count in re.findall(r"reported (\w+)\s*\W\s*(\d+)", done.stdout)}
    assert set(reported) >= {"delivered", "bounced", "suppressed"}, done.stdout
    assert sum(reported.values()) == 10, done.stdout
    assert (run / "records.db").is_file()
