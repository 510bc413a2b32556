"""One self-contained HTML file for an incident: the kept requests in a sortable list, each
opening the same panel as ``?ioprofiler=1``.

>>> html = render_report(records("/var/log/shop/ioprofiler.jsonl"), title="03:12 outage")

No external files: styles, script and every panel are inside. Everything from the log is
escaped. Without script the panels are all shown below the list, each under its request.
"""

from __future__ import annotations

from collections.abc import Iterable
from html import escape
from typing import Any

from ioprofiler.render.html import render_panel
from ioprofiler.stored import load

_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#fff}
header{padding:12px 16px;background:#eef1fb;border-bottom:3px solid #3b5bdb}
h1{font-size:18px;margin:0 0 4px}
main{padding:8px 16px}
table.requests{border-collapse:collapse;width:100%;font:13px/1.4 ui-monospace,Menlo,monospace}
.requests th,.requests td{padding:3px 8px;border-bottom:1px solid #e4e6ef;text-align:left}
.requests th{background:#f3f4f8;cursor:pointer;user-select:none;position:sticky;top:0}
.requests th[aria-sort=ascending]::after{content:" ▲"}
.requests th[aria-sort=descending]::after{content:" ▼"}
.requests td.n,.requests th.n{text-align:right}
.requests tbody tr{cursor:pointer}
.requests tbody tr:hover,.requests tbody tr.open{background:#eef1fb}
.requests tr.e5 td:nth-child(5){color:#b3001b;font-weight:600}
section.request{margin:12px 0 24px}
section.request h2{font-size:14px;margin:0 0 4px;font-family:ui-monospace,Menlo,monospace}
.js section.request{display:none}
.js section.request.open{display:block}
"""

_SCRIPT = """(function(){document.documentElement.className="js";
var table=document.querySelector("table.requests"),body=table.tBodies[0];
function open(id){var rows=body.rows;for(var i=0;i<rows.length;i++)
rows[i].classList.toggle("open",rows[i].getAttribute("data-panel")===id);
var all=document.querySelectorAll("section.request");for(var j=0;j<all.length;j++)
all[j].classList.toggle("open",all[j].id===id);var shown=document.getElementById(id);
if(shown)shown.scrollIntoView({block:"nearest"})}
body.addEventListener("click",function(e){var row=e.target.closest("tr");
if(row){history.replaceState(null,"","#"+row.getAttribute("data-panel"));
open(row.getAttribute("data-panel"))}});
var heads=table.tHead.rows[0].cells;for(var k=0;k<heads.length;k++)(function(k){
heads[k].addEventListener("click",function(){var th=heads[k],
down=th.getAttribute("aria-sort")!=="descending",num=th.classList.contains("n"),
rows=Array.prototype.slice.call(body.rows);for(var h=0;h<heads.length;h++)
heads[h].removeAttribute("aria-sort");th.setAttribute("aria-sort",down?"descending":"ascending");
rows.sort(function(a,b){var x=a.cells[k].getAttribute("data-v"),y=b.cells[k].getAttribute("data-v");
var c=num?parseFloat(x)-parseFloat(y):(x<y?-1:x>y?1:0);return down?-c:c});
rows.forEach(function(r){body.appendChild(r)})})})(k);
if(location.hash.length>1)open(location.hash.slice(1))})();"""

_COLUMNS = (
    ("time", ""),
    ("id", ""),
    ("method", ""),
    ("path", ""),
    ("status", "n"),
    ("ms", "n"),
    ("I/O ms", "n"),
    ("calls", "n"),
    ("route", ""),
    ("reason", ""),
)


def _cell(value: Any, css: str = "", shown: str | None = None) -> str:
    text = escape(str(value if shown is None else shown))
    klass = f' class="{css}"' if css else ""
    return f'<td{klass} data-v="{escape(str(value))}">{text}</td>'


def _row(number: int, record: dict[str, Any]) -> str:
    status = record.get("status", "")
    cells = [
        _cell(record.get("time", "")),
        _cell(record.get("id", "")),
        _cell(record.get("method", "")),
        _cell(record.get("path", "")),
        _cell(status, "n"),
        _cell(record.get("duration_ms", 0), "n", f"{record.get('duration_ms', 0):.1f}"),
        _cell(record.get("io_ms", 0), "n", f"{record.get('io_ms', 0):.1f}"),
        _cell(record.get("calls", 0), "n"),
        _cell(record.get("route") or ""),
        _cell(", ".join(record.get("reasons") or [record.get("reason", "")])),
    ]
    css = ' class="e5"' if str(status).startswith("5") else ""
    return f'<tr data-panel="p{number}"{css}>{"".join(cells)}</tr>'


def _section(number: int, record: dict[str, Any], slow_ms: float) -> str:
    trace, request = load(record)
    title = f"{record.get('id', '')} {record.get('method', '')} {record.get('path', '')}"
    return (
        f'<section class="request" id="p{number}"><h2>{escape(title)}</h2>'
        f"{render_panel(trace, request, slow_ms=slow_ms)}</section>"
    )


def render_report(
    records: Iterable[dict[str, Any]], title: str = "ioprofiler report", slow_ms: float = 100.0
) -> str:
    """The HTML document for ``records`` (kept requests from the log)."""
    rows, sections = [], []
    for number, record in enumerate(records, start=1):
        rows.append(_row(number, record))
        sections.append(_section(number, record, slow_ms))
    heads = "".join(
        f'<th class="{css}">{escape(name)}</th>' if css else f"<th>{escape(name)}</th>"
        for name, css in _COLUMNS
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{escape(title)}</h1>{len(rows)} kept requests; "
        "click a row for its I/O, a column to sort</header><main>"
        f'<table class="requests"><thead><tr>{heads}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>{''.join(sections)}</main>"
        f"<script>{_SCRIPT}</script></body></html>"
    )
