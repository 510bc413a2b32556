"""Where the command prints: rich in a terminal, plain text when piped, JSON lines on request.

Everything the command prints comes from the log, and everything in the log is untrusted (a
client chose the path, the application chose the keys): every line, table cell and JSON
document goes out through :class:`Output`, which escapes control characters there, once,
for every command.
"""

from __future__ import annotations

import json
import re
import sys
from typing import IO, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ioprofiler.sql_text import visible

# What json.dumps(ensure_ascii=False) leaves raw that a terminal may act on: C1 controls
# (0x9b is CSI on some terminals), DEL, and the Unicode line and paragraph separators.
_RAW_IN_JSON = re.compile(r"[\x7f-\x9f\u2028\u2029]")


class Output:
    """``out.line(Text(...))``, ``out.table(...)``, ``out.json(obj)``, each flushed at once
    (``tail`` is read live through pipes)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stdout
        self.rich = self.stream.isatty()
        self.console = Console(file=self.stream, highlight=False) if self.rich else None

    @property
    def width(self) -> int | None:
        """The terminal's width, None when piped (lines are then not cut)."""
        return None if self.console is None else self.console.width

    def line(self, text: Text | str = "") -> None:
        """One line; a str is printed as it is (never read as rich markup)."""
        text = escaped(text if isinstance(text, Text) else Text(text))
        if self.console is not None:
            self.console.print(text, soft_wrap=True)
        else:
            self.stream.write(text.plain + "\n")
        self.stream.flush()

    def json(self, value: Any) -> None:
        document = json.dumps(value, ensure_ascii=False)
        document = _RAW_IN_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", document)
        self.stream.write(document + "\n")
        self.stream.flush()

    def table(self, headers: list[str], rows: list[list[str]], numeric: set[int]) -> None:
        headers = [visible(cell) for cell in headers]
        rows = [[visible(cell) for cell in row] for row in rows]
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


def escaped(text: Text) -> Text:
    """``text`` with control characters as escapes (``\\x1b``), its styles kept; line breaks
    between its lines stay."""
    if visible(text.plain) == text.plain:
        return text
    return Text("\n").join(_escaped_line(line) for line in text.split("\n"))


def _escaped_line(line: Text) -> Text:
    cuts = sorted({cut for span in line.spans for cut in (span.start, span.end)})
    result = Text(style=line.style, end="")
    for piece in line.divide(cuts):
        shown = Text(visible(piece.plain))
        for span in piece.spans:  # each covers the whole piece: cut at every span's ends
            shown.stylize(span.style)
        result.append_text(shown)
    return result
