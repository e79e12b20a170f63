"""``postbus api``: run the ingest API, and make API keys for its client registry.

::

    postbus api                 # serve on POSTBUS_API_HOST:POSTBUS_API_PORT until SIGTERM
    postbus api new-key         # print a fresh key and the sha256:... line for the registry

The app lives with the producers (:mod:`postbus.producers.api`); this module only wires it to the
worker's template renderer for the template list and previews, which is why it sits in the kernel
beside the other wiring (the producers never import the worker).
"""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    invoke_without_command=True,
    help="Run the ingest API (HTTP front door to the queue).",
)


@app.callback()
def api(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Override POSTBUS_API_HOST.")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Override POSTBUS_API_PORT.")] = None,
) -> None:
    """Serve the ingest API until SIGTERM/SIGINT; see docs/api.md."""
    if ctx.invoked_subcommand is not None:
        return
    from postbus.logs import configure_logging
    from postbus.producers.api import build_app, serve
    from postbus.producers.api.server import registry_from_settings
    from postbus.settings import load_settings
    from postbus.telemetry import configure_telemetry
    from postbus.worker.rendering import TemplateRenderer

    overrides = {name: value for name, value in (("api_host", host), ("api_port", port)) if value is not None}
    settings = load_settings(**overrides)
    settings.require_servicebus("the ingest API")
    registry = registry_from_settings(settings)  # a bad registry fails here, before anything is set up
    configure_logging(level=settings.log_level, fmt=settings.log_format)
    # Before the app exists: the Azure Monitor distro instruments FastAPI apps created after it.
    configure_telemetry(settings)
    application = build_app(
        settings, templates=TemplateRenderer(user_dir=settings.templates_dir), registry=registry
    )
    serve(application, host=settings.api_host, port=settings.api_port)


@app.command("new-key")
def new_key_command() -> None:
    """Print a new API key (give it to the client) and its hash (put it in the registry)."""
    from postbus.producers.api import new_key

    key, stored = new_key()
    typer.echo(f"key:  {key}")
    typer.echo(f"hash: {stored}")
