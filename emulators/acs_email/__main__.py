"""``python -m emulators.acs_email``: the same as ``postbus emulator email``."""

from __future__ import annotations

from postbus.emulators.acs_email.cli import main

__all__: list[str] = []

main()
