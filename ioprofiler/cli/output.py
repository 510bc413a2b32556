"""Where the command prints: rich in a terminal, plain text when piped, JSON lines on request."""

from __future__ import annotations

import json
import sys
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


class Output:
    """``out.line(Text(...))``, ``out.table(...)``, ``out.json(obj)``, each flushed at once
    (``tail`` is read live through pipes)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.rich = self.stream.isatty()
        self.console = Console(file=self.stream, highlight=False) if self.rich else None

    def line(self, text: Text | str = "") -> None:
        if self.console is not None:
            self.console.print(text, soft_wrap=True)
        else:
            self.stream.write((text.plain if isinstance(text, Text) else text) + "\n")
        self.stream.flush()

    def json(self, value: Any) -> None:
        self.stream.write(json.dumps(value, ensure_ascii=False) + "\n")
        self.stream.flush()

    def table(self, headers: list[str], rows: list[list[str]], numeric: set[int]) -> None:
        if self.console is not None:
            table = Table(show_edge=False, pad_edge=False, header_style="bold")
            for index, header in enumerate(headers):
                table.add_column(header, justify="right" if index in numeric else "left")
            for row in rows:
                table.add_row(*(Text(cell) for cell in row))
            self.console.print(table)
            return
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

        def fit(cells: list[str]) -> str:
            parts = [
                cell.rjust(width) if index in numeric else cell.ljust(width)
                for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        self.stream.write("\n".join([fit(headers), *(fit(row) for row in rows)]) + "\n")
        self.stream.flush()
