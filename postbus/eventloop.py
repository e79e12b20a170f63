"""Which asyncio event loop a long-running command runs on: uvloop when it is installed.

uvloop (the ``fast`` extra: ``pip install 'postbus[fast]'``) runs the same asyncio code with less
CPU per message. ``POSTBUS_EVENT_LOOP`` chooses: ``auto`` (uvloop if importable, else asyncio's
own loop), ``asyncio``, or ``uvloop`` (which fails at start, in one line, when it is missing)::

    run(main(settings), choice=settings.event_loop)
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from postbus.errors import SettingsError
from postbus.settings import env_name

__all__ = ["LoopChoice", "loop_factory", "run"]

T = TypeVar("T")
LoopChoice = Literal["auto", "asyncio", "uvloop"]


def loop_factory(choice: LoopChoice) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory of the chosen loop; ``None`` means asyncio's default."""
    if choice == "asyncio":
        return None
    if importlib.util.find_spec("uvloop") is None:
        if choice == "uvloop":
            raise SettingsError(
                f"{env_name('event_loop')}: uvloop is not installed (pip install 'postbus[fast]'), "
                "or choose auto or asyncio"
            )
        return None
    import uvloop

    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def run(main: Coroutine[Any, Any, T], *, choice: LoopChoice = "auto") -> T:
    """``asyncio.run(main)`` on the chosen loop."""
    try:
        factory = loop_factory(choice)
    except BaseException:
        main.close()  # never awaited: say so quietly instead of a RuntimeWarning
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
