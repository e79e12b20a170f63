"""Tables at 80 columns: ids and names stay whole and on one line; descriptions wrap instead."""

from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table

from postbus.worker.ops.console import keep_whole

OPERATION_ID = "c2a2cedf-4263-5596-9d4b-c8497feddfd1"
LONG = "ACS does not know this operation (never sent, or older than its retention) " * 2


def _render(table: Table, width: int = 80) -> str:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    return out.getvalue()


def test_without_it_rich_cuts_the_id_at_80_columns() -> None:
    # The failure this guards against: an operation id ending in "…" cannot be pasted.
    table = Table("generation", "operation id", "status", "error")
    table.add_row("0", OPERATION_ID, "NotFound", LONG)
    assert OPERATION_ID not in _render(table)


def test_kept_columns_are_whole_and_the_description_wraps_completely() -> None:
    table = Table("generation", "operation id", "status", "error")
    table.add_row("0", OPERATION_ID, "[red]NotFound[/red]", LONG)
    text = _render(keep_whole(table, "generation", "operation id", "status"))
    assert OPERATION_ID in text
    assert max(len(line) for line in text.splitlines()) <= 80
    words = " ".join(line.split("│")[4].strip() for line in text.splitlines() if line.count("│") == 5)
    assert words.split() == LONG.split()


def test_a_word_longer_than_its_column_is_folded_not_cut() -> None:
    table = Table("check", "detail")
    table.add_row("sender aliases", "4 aliases on " + "very-long-subdomain." * 6 + "example.com")
    text = _render(keep_whole(table, "check"), width=40)
    assert "…" not in text
