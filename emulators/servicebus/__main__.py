"""``python -m emulators.servicebus``."""

from __future__ import annotations

from postbus.emulators.servicebus.cli import main

__all__: list[str] = []

main()
