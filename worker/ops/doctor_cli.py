"""``postbus doctor``: the preflight checklist, as a table or JSON, failing when a check fails."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from postbus.errors import SettingsError
from postbus.settings import Settings
from postbus.worker.ops.console import AsJson, echo_json, keep_whole, ops_settings, stdout
from postbus.worker.ops.errors import BadInput

__all__ = ["doctor_app"]

doctor_app = typer.Typer(add_completion=False)

# -- doctor --------------------------------------------------------------------------------------


@doctor_app.command()
def doctor(
    servicebus_admin: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="The Service Bus emulator's admin endpoint (http://host:port), to check queue properties.",
        ),
    ] = None,
    azure: Annotated[
        bool, typer.Option("--azure", help="Also check ACS resources through Azure Resource Manager.")
    ] = False,
    subscription: Annotated[
        str | None, typer.Option(metavar="ID", help="With --azure: subscription id.")
    ] = None,
    resource_group: Annotated[
        str | None, typer.Option(metavar="NAME", help="With --azure: resource group.")
    ] = None,
    email_service: Annotated[
        str | None, typer.Option(metavar="NAME", help="With --azure: email service name.")
    ] = None,
    communication_service: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="With --azure: Communication Service (default: from the ACS endpoint)."
        ),
    ] = None,
    arm_endpoint: Annotated[
        str | None, typer.Option(metavar="URL", help="With --azure: ARM endpoint (default: public Azure).")
    ] = None,
    arm_token: Annotated[
        str | None,
        typer.Option(
            metavar="TOKEN",
            help="With --azure: bearer token (az account get-access-token); default DefaultAzureCredential.",
        ),
    ] = None,
    arm_ca_bundle: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, metavar="PEM", help="With --azure: CA bundle for --arm-endpoint."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Preflight checks: settings, queue, ACS credentials, senders, templates, telemetry (and --azure)."""
    from postbus.worker.ops.doctor import DoctorOptions, run_doctor

    target = None
    if azure:
        target = _azure_target(
            subscription,
            resource_group,
            email_service,
            communication_service,
            arm_endpoint,
            arm_token,
            arm_ca_bundle,
        )
    loaded: Settings | SettingsError
    try:
        loaded = ops_settings()
    except SettingsError as exc:
        loaded = exc
    options = DoctorOptions(servicebus_admin_url=servicebus_admin, azure=target)
    try:
        checks = asyncio.run(run_doctor(loaded, options=options))
    finally:
        # The credential this command opened for --azure (DefaultAzureCredential holds sessions).
        close = getattr(target.credential, "close", None) if target is not None else None
        if callable(close):
            close()
    failed = [check for check in checks if check.status == "fail"]
    if as_json:
        echo_json({"ok": not failed, "checks": [check.to_json() for check in checks]})
    else:
        marks = {
            "pass": "[green]pass[/green]",
            "fail": "[red]FAIL[/red]",
            "warn": "[yellow]warn[/yellow]",
            "skip": "skip",
        }
        table = Table("check", "result", "detail", "fix", title="postbus doctor")
        for check in checks:
            table.add_row(check.name, marks[check.status], check.detail, check.fix)
        console = stdout()
        console.print(keep_whole(table, "check", "result"))
        console.print(f"{len(failed)} failed" if failed else "all checks passed")
    if failed:
        raise typer.Exit(1)


def _azure_target(
    subscription: str | None,
    resource_group: str | None,
    email_service: str | None,
    communication_service: str | None,
    arm_endpoint: str | None,
    arm_token: str | None,
    arm_ca_bundle: Path | None,
) -> Any:
    from postbus.worker.ops.azure_checks import AzureTarget, StaticTokenCredential

    if not (subscription and resource_group and email_service):
        raise BadInput("--azure needs --subscription, --resource-group and --email-service")
    credential: Any
    if arm_token:
        credential = StaticTokenCredential(arm_token)
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    return AzureTarget(
        subscription_id=subscription,
        resource_group=resource_group,
        email_service=email_service,
        credential=credential,
        communication_service=communication_service,
        arm_endpoint=arm_endpoint,
        connection_verify=str(arm_ca_bundle) if arm_ca_bundle else True,
    )
