"""``postbus demo``: a holiday spike end to end on the embedded emulators.

The full demo arrives with the pipeline (producers, worker and both emulators); until then the
command says so instead of pretending.
"""

from __future__ import annotations

import typer

__all__ = ["app"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def demo() -> None:
    """Run a holiday spike end to end on the embedded emulators."""
    typer.echo("The demo arrives with the pipeline issue (producers + worker); the emulators run today:")
    typer.echo("  postbus emulator servicebus   |   postbus emulator email")
