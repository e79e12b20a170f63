"""The ``postbus`` command line.

Subcommand groups live next to the code they drive (``producers.cli``, ``worker.cli``,
``emulators.cli``, ...) and are imported only when invoked, so ``postbus --help`` stays fast
and does not pull in the Azure SDKs or proton.

Every failure the user can fix is reported as one line on stderr with a non-zero exit code:
usage errors exit 2, configuration errors exit 2, operational failures exit 1. Before any
subcommand runs, each ``POSTBUS_`` variable that is not a setting gets one warning line on stderr
(:mod:`postbus.variables`).
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import Any, ClassVar

import typer
from typer.core import TyperGroup, TyperOption

from postbus import __version__
from postbus.errors import Interrupted, PostbusError

__all__ = ["COMMANDS", "LazyGroup", "build_cli", "main"]


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """Where a subcommand lives (``module:attribute``, a ``typer.Typer``) and its one-line help."""

    target: str
    help: str


# Registration order is the order ``postbus --help`` lists them in.
COMMANDS: dict[str, LazyCommand] = {
    "publish": LazyCommand("postbus.producers.cli:app", "Publish notification events to the queue."),
    "api": LazyCommand("postbus.api:app", "Run the ingest API: authenticated HTTP front door to the queue."),
    "worker": LazyCommand("postbus.worker.cli:app", "Consume the queue and send email through ACS."),
    "templates": LazyCommand("postbus.worker.templates_cli:app", "List and preview the email templates."),
    "dlq": LazyCommand(
        "postbus.worker.ops.dlq_cli:dlq_app", "Inspect, replay and purge dead-lettered messages."
    ),
    "status": LazyCommand(
        "postbus.worker.ops.status_cli:status_app",
        "What happened to an event or operation: the delivery record, else ACS.",
    ),
    "report": LazyCommand(
        "postbus.worker.ops.report_cli:report_app",
        "Delivery outcomes by status, tenant and type over a time range.",
    ),
    "doctor": LazyCommand(
        "postbus.worker.ops.doctor_cli:doctor_app", "Preflight checks of settings, queue, ACS and templates."
    ),
    "attachments": LazyCommand(
        "postbus.attachments.cli:app", "Retention of the claim-check attachment store (prune)."
    ),
    "emulator": LazyCommand(
        "postbus.emulators.cli:app", "Run the local Service Bus and ACS Email emulators."
    ),
    "console": LazyCommand(
        "postbus.pipeline_view.cli:app",
        "Serve the live pipeline view (queues, rate, dead letters) in a browser.",
    ),
    "demo": LazyCommand("postbus.demo:app", "Run a holiday spike end to end on the embedded emulators."),
}


class LazyGroup(TyperGroup):
    """A typer group whose subcommands are imported on first use.

    Listing commands for ``--help`` uses the registry's help text and imports nothing.
    """

    lazy: ClassVar[dict[str, LazyCommand]] = COMMANDS

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._listing = False

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *self.lazy]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        if self._listing:
            return typer.main.get_command(_placeholder(cmd_name, self.lazy[cmd_name].help))
        return self._load(cmd_name)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # typer would turn this into a silent exit 130; the operator gets one line instead.
            raise Interrupted("stopped by Ctrl-C before it finished") from None

    def format_help(self, ctx: Any, formatter: Any) -> Any:
        self._listing = True
        try:
            return super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def _load(self, name: str) -> Any:
        module_name, _, attr = self.lazy[name].target.partition(":")
        module = importlib.import_module(module_name)
        if hasattr(module, "template_check_factory"):
            # `postbus publish --check` renders with the worker's templates; the producer package
            # does not import the worker, so the two meet here.
            setattr(module, "template_check_factory", _template_check)  # noqa: B010 - a module seen as ModuleType
        app = getattr(module, attr)
        command = typer.main.get_command(app)
        command.name = name
        return command


def _template_check(settings: Any) -> Any:
    from postbus.worker.rendering import TemplateRenderer, template_check

    return template_check(TemplateRenderer(user_dir=settings.templates_dir))


def _placeholder(name: str, help_text: str) -> typer.Typer:
    stub = typer.Typer(add_completion=False)
    stub.command(name=name, help=help_text)(lambda: None)
    return stub


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"postbus {__version__}")
        raise typer.Exit(0)


def _warn_unknown_variables() -> None:
    # Before the command runs, so a misspelt setting is named before the surprise it causes.
    from postbus.variables import unknown_variables

    for unknown in unknown_variables():
        typer.echo(f"postbus: warning: {unknown}", err=True)


def _flags_show_no_type() -> None:
    """Show no value type for options that take none (``--json``, ``--help``).

    The installed typer labels every option with its type and prints ``<bool>`` beside flags,
    which reads as if ``--json`` wanted a value. Options with a value keep their label.
    """
    if getattr(TyperOption.display_type_rich, "_postbus_flags", False):
        return
    original = TyperOption.display_type_rich

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag and self.metavar is None:
            return None
        return original(self, ctx)

    display_type_rich._postbus_flags = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


def build_cli() -> Any:
    """Build the root command (a fresh object per call, so tests can invoke it in isolation)."""
    _flags_show_no_type()
    app = typer.Typer(
        cls=LazyGroup,
        name="postbus",
        help="Postbus: transactional email on Azure Service Bus and ACS Email.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def root(
        ctx: typer.Context,
        version: bool = typer.Option(
            False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
        ),
    ) -> None:
        """Postbus: transactional email on Azure Service Bus and ACS Email."""
        if not ctx.resilient_parsing:
            _warn_unknown_variables()

    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``postbus`` console script; returns the process exit code."""
    cli = build_cli()
    try:
        result = cli.main(args=argv, prog_name="postbus", standalone_mode=False)
    except typer.TyperException as exc:
        # typer's click errors (usage, bad parameter): one line, except "no arguments" which shows help.
        message = exc.format_message().strip()
        if message:  # "no arguments" has already printed the help and carries no message
            typer.echo(message if "\n" in message else f"postbus: error: {message}", err=True)
        return int(getattr(exc, "exit_code", 2))
    except typer.Abort:
        typer.echo("postbus: aborted", err=True)
        return 130
    except Interrupted as exc:
        typer.echo(f"postbus: interrupted: {exc}", err=True)
        return exc.exit_code
    except PostbusError as exc:
        typer.echo(f"postbus: error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        typer.echo("postbus: interrupted", err=True)
        return 130
    except ModuleNotFoundError as exc:
        # The production image leaves the emulators out, and the demo needs them.
        if not (exc.name or "").startswith("postbus.emulators"):
            raise
        typer.echo(
            "postbus: error: the emulators are not installed here (the worker image leaves them out); "
            "run this from a source checkout",
            err=True,
        )
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
