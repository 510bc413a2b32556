"""The inline panel: a self-contained block of HTML injected at the end of a page.

Isolated from the page's CSS by a declarative shadow root (with a few lines of script
for browsers without it), collapsible without script (``<details>``), and readable with
no script and no style at all (a strict Content-Security-Policy without a nonce may
block both). Everything taken from the application is escaped.

>>> html = render_panel(trace, request=RequestInfo("GET", "/listing/1", "200 OK"))
"""

from __future__ import annotations

from html import escape

from ioprofiler import config
from ioprofiler.analysis import Summary, summarize
from ioprofiler.event import CACHE, CONNECTION_OPS, DB, HTTP, POOL_WAIT, Event, callsite_text
from ioprofiler.findings import Finding, find
from ioprofiler.render.json import redacted
from ioprofiler.render.request import RequestInfo
from ioprofiler.render.text import MAX_NUMBERS_SHOWN
from ioprofiler.roundtrip_text import op_count, ordered_ops
from ioprofiler.sql_text import render_statement_escaped
from ioprofiler.targets import batch_read_of
from ioprofiler.trace import Trace
from ioprofiler.words import counted

SLOW_MS = config.DEFAULT_SLOW_MS
_TRACE_OFFSET_MS = Trace.offset_ms

_STYLE = """
:host{all:initial;display:block}
.iop{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;color:#1d2330;
background:#fbfbfd;border-top:3px solid #3b5bdb;margin:0;padding:0;text-align:left}
.iop summary{cursor:pointer;padding:8px 12px;background:#eef1fb;font-weight:600;
list-style-position:inside}
.iop summary span{font-weight:400;margin-left:1.2em;white-space:nowrap}
.iop .body{padding:8px 12px;overflow-x:auto}
.iop h3{font-size:13px;margin:12px 0 4px}
.iop table{border-collapse:collapse;width:100%}
.iop th,.iop td{padding:2px 6px;border-bottom:1px solid #e4e6ef;vertical-align:top}
.iop th{text-align:left;background:#f3f4f8;font-weight:600}
.iop td.n,.iop th.n{text-align:right;white-space:nowrap}
.iop td.w{word-break:break-word;min-width:18em}
.iop td.c{color:#68708a;font-size:12px;word-break:break-all}
.iop tr.err td{background:#fff0f0;color:#b3001b}
.iop .l td:nth-child(-n+2),.iop .l td:nth-child(5),.iop .l th:nth-child(-n+2),
.iop .l th:nth-child(5){text-align:right;white-space:nowrap}
.iop .l td:nth-child(3){width:120px;min-width:60px}
.iop .l td:nth-child(6){word-break:break-word;min-width:18em}
.iop .l td:nth-child(7){color:#68708a;font-size:12px;min-width:16em;word-break:break-word}
.iop tr.slow td:nth-child(5){color:#b35c00;font-weight:600}
.iop b.n1,.iop b.dup,.iop b.e{font-size:11px;border-radius:3px;padding:0 4px;margin-right:4px;
color:#fff;font-weight:600}
.iop b.n1{background:#c2255c}.iop b.dup{background:#e8590c}.iop b.e{background:#b3001b}
.iop .bar{height:10px;background:#e9ecf5;position:relative}
.iop .bar i{position:absolute;top:0;height:10px;min-width:1px;background:#3b5bdb}
.iop tr.k .bar i{background:#2b8a3e}
.iop tr.o td{color:#555d75}.iop tr.o .bar i{background:#8a8fa3}
.iop tr.pw td{background:#fff3bf;color:#7a3e00;font-weight:600}
.iop tr.pw .bar i{background:#e8590c}
.iop b.pw{font-size:11px;border-radius:3px;padding:0 4px;margin-right:4px;color:#fff;
font-weight:600;background:#e8590c}
.iop .warn{color:#c2255c}
.iop ol.f{margin:4px 0 10px;padding-left:2em}
.iop ol.f li{margin:3px 0}
.iop ol.f b.n1{margin-right:6px}
.iop ol.f .hint{color:#68708a}
.iop ol.f a{color:#3b5bdb}
.iop tr.hl td{background:#fff3bf}
.iop .note{color:#b3001b;font-weight:600}
.iop table.r{margin:4px 12px;width:calc(100% - 24px)}
.iop tr.q{cursor:pointer}.iop tr.q:hover td{background:#eef1fb}
.iop tr.q td.warn{color:#c2255c;font-weight:600}
@media (max-width:700px){.iop .l td:nth-child(3),.iop .l th:nth-child(3),
.iop .l td:nth-child(7),.iop .l th:nth-child(7),.iop td.c,.iop th.c{display:none}}
"""

_SCRIPT = """var s=document.currentScript,h=s&&s.previousElementSibling;
if(!h||h.id!=="ioprofiler-panel")return;var r=h.shadowRoot;
if(!r){var t=h.querySelector("template");if(!t)return;r=h.attachShadow({mode:"open"});
r.appendChild(t.content);t.remove()}
function bars(box,total){var rows=box.querySelectorAll("table.l tr");
for(var i=1;i<rows.length;i++){var c=rows[i].cells,st=parseFloat(c[1].textContent),
d=parseFloat(c[4].textContent)||0,bar=document.createElement("div"),b=document.createElement("i");
bar.className="bar";bar.appendChild(b);c[2].appendChild(bar);
b.style.left=Math.min(100,st/total*100)+"%";b.style.width=Math.min(100,d/total*100)+"%"}}
bars(r.querySelector(".body"),parseFloat(h.getAttribute("data-total"))||1);
r.addEventListener("click",function(e){var a=e.target.closest&&e.target.closest("a[data-calls]");
if(!a)return;e.preventDefault();var first=null,box=a.closest(".body");
box.querySelectorAll("tr.hl").forEach(function(x){x.classList.remove("hl")});
a.getAttribute("data-calls").split(" ").forEach(function(n){
var row=box.querySelector("table.l tr:nth-child("+(+n+1)+")");
if(row){row.classList.add("hl");first=first||row}});
if(first)first.scrollIntoView({block:"center"})});"""

# The page's own requests, from the top of the page: same-origin fetch and XMLHttpRequest
# calls are marked, and the ids of those the server kept are queued until the panel (at the
# end of the page) shows them.
_MARK_SCRIPT = """(function(){if(window.__ioprofiler)return;var MARK="X-IOProfiler-Follow",
ID="X-IOProfiler-Id",F=window.fetch,api=window.__ioprofiler={fetch:F,queued:[],show:null};
function same(u){
try{return new URL(String(u),location.href).origin===location.origin}catch(e){return false}}
function kept(id){if(!id||!/^[0-9a-f]{32}$/.test(id))return;
if(api.show)api.show(id);else api.queued.push(id)}
if(F)window.fetch=function(input,init){var u=input&&input.url!==undefined?input.url:input;
if(!same(u))return F.apply(this,arguments);
var hd=new Headers(init&&init.headers||(input instanceof Request?input.headers:undefined));
hd.set(MARK,"1");init=Object.assign({},init,{headers:hd});
return F.call(this,input,init).then(function(resp){try{var id=resp.headers.get(ID);
if(id)resp.clone().arrayBuffer().then(function(){kept(id)},function(){kept(id)})}catch(e){}
return resp})};
var X=window.XMLHttpRequest&&XMLHttpRequest.prototype;if(X){var open=X.open,send=X.send;
X.open=function(m,u){this.__ioprofiler=same(u);return open.apply(this,arguments)};
X.send=function(){var x=this;if(x.__ioprofiler){try{x.setRequestHeader(MARK,"1");
x.addEventListener("loadend",function(){kept(x.getResponseHeader(ID))})}catch(e){}}
return send.apply(this,arguments)}}})();"""

# The panel's list of them: each one the server kept is listed once its body has arrived;
# a click opens its listing.
_FOLLOW_SCRIPT = """function follow(h,r,bars){var api=window.__ioprofiler;if(!api||api.show)return;
var base=h.getAttribute("data-follow"),list=r.querySelector("table.r"),
count=r.querySelector("span.r"),n=0;
function cell(row,text,cls){var c=row.insertCell();c.textContent=text;if(cls)c.className=cls}
function add(id,e){var row=list.insertRow(),open=null;row.className="q";
row.setAttribute("data-id",id);
cell(row,e.method);cell(row,e.path,"w");cell(row,e.status);cell(row,e.ms.toFixed(1),"n");
cell(row,e.calls,"n");cell(row,e.findings.join(", "),"warn");list.hidden=false;
n+=1;count.textContent=n+(n===1?" request":" requests")+" of this page";
row.addEventListener("click",function(){if(open){open.remove();open=null;return}
open=list.insertRow(row.rowIndex+1);var c=open.insertCell();c.colSpan=6;
var box=document.createElement("div");box.className="body";box.innerHTML=e.html;c.appendChild(box);
bars(box,e.ms||1)})}
function show(id,tries){var hd={};hd["X-IOProfiler-Follow"]="1";
(api.fetch||window.fetch).call(window,base+id,{headers:hd,credentials:"same-origin",
cache:"no-store"}).then(function(x){if(x.status===200)return x.json().then(function(e){add(id,e)});
if(tries<6)setTimeout(function(){show(id,tries+1)},100<<tries)}).catch(function(){})}
api.show=function(id){show(id,0)};api.queued.splice(0).forEach(api.show)}"""


def render_follow_marker(nonce: str | None = None) -> str:
    """The script that marks the page's own requests, for the top of the page (before the
    page's scripts run); the panel lists them (:func:`render_panel` with ``follow``)."""
    nonce_attr = f' nonce="{escape(nonce)}"' if nonce else ""
    return f"<script{nonce_attr}>{_MARK_SCRIPT}</script>"


MAX_LINKED_CALLS = 1000


def _ms(value: float | None) -> str:
    return "running" if value is None else f"{value:.3f}"


def _header(
    summary: Summary, request: RequestInfo | None, elapsed_ms: float, findings: list[Finding]
) -> str:
    parts = []
    if request is not None:
        parts.append(f"{escape(request.method)} {escape(request.path)} → {escape(request.status)}")
    parts.append(f"request {elapsed_ms:.1f} ms")
    parts.append(f"I/O {summary.ms_of():.1f} ms")
    parts.append(f"not in I/O {summary.unexplained_ms:.1f} ms")
    parts.append(counted(summary.calls_of(DB), "query"))
    cache = counted(summary.calls_of(CACHE), "cache call")
    if summary.hits + summary.misses:
        cache += f" ({counted(summary.hits, 'hit')}, {counted(summary.misses, 'miss')})"
    parts.append(cache)
    if summary.calls_of(HTTP):
        parts.append(counted(summary.calls_of(HTTP), "HTTP call"))
    waits = summary.ops_of().get(POOL_WAIT)
    if waits is not None:
        parts.append(f'<b class="pw">{op_count(POOL_WAIT, waits.count)} {waits.ms:.1f} ms</b>')
    if summary.errors:
        parts.append(f'<b class="e">{counted(summary.errors, "error")}</b>')
    if findings:
        parts.append(f'<b class="n1">{counted(len(findings), "finding")}</b>')
    return "ioprofiler" + "".join(f"<span>{p}</span>" for p in parts)


def _targets_table(summary: Summary, elapsed_ms: float) -> str:
    rows = []
    for total in summary.targets:
        share = f"{total.ms / elapsed_ms:.0%}" if elapsed_ms > 0 else ""
        reads = total.hits + total.misses
        hits = f"{total.hits}/{total.misses}" if reads else ""
        ops = []
        for op, part in ordered_ops(total.ops):
            text = f"{op_count(op, part.count)} {part.ms:.3f} ms"
            ops.append(f'<b class="pw">{text}</b>' if op == POOL_WAIT else text)
        rows.append(
            f"<tr><td>{escape(total.target)}</td><td>{total.kind}</td>"
            f'<td class="n">{total.calls}</td><td class="n">{total.ms:.3f}</td>'
            f'<td class="n">{share}</td><td class="n">{hits}</td>'
            f'<td class="n">{total.errors or ""}</td><td>{", ".join(ops)}</td></tr>'
        )
    return (
        '<table><tr><th>target</th><th>kind</th><th class="n">calls</th><th class="n">ms</th>'
        '<th class="n">share</th><th class="n">hits/misses</th><th class="n">errors</th>'
        "<th>of which connects, pool waits, transaction ends</th></tr>" + "".join(rows) + "</table>"
    )


def _findings_section(findings: list[Finding], numbers: dict[int, int]) -> str:
    """Each finding with its fix; its link highlights the calls it is about in the listing."""
    if not findings:
        return ""
    items = []
    number_of = numbers.get
    for number, finding in enumerate(findings, start=1):
        link = ""
        calls = [n for n in map(number_of, map(id, finding.events)) if n is not None]
        if calls:
            linked = " ".join(map(str, calls[:MAX_LINKED_CALLS]))
            link = (
                f' <a href="#e{calls[0]}" data-calls="{linked}">calls '
                f"{escape(_call_numbers(calls))}</a>"
            )
        items.append(
            f'<li id="f{number}" data-kind="{finding.kind}"><b class="n1">'
            f"{escape(finding.heading)}</b> {escape(finding.detail)}{link}"
            f'<br><span class="hint">fix: {escape(finding.hint)}</span></li>'
        )
    return '<h3 class="warn">Findings</h3><ol class="f">' + "".join(items) + "</ol>"


def _call_numbers(calls: list[int]) -> str:
    """:func:`ioprofiler.render.text.call_numbers`, from the calls' numbers."""
    if len(calls) > MAX_NUMBERS_SHOWN:
        more = len(calls) - MAX_NUMBERS_SHOWN
        return ", ".join([f"#{n}" for n in calls[:MAX_NUMBERS_SHOWN]]) + f" … (+{more} more)"
    return ", ".join([f"#{n}" for n in calls])


def _repeats_section(summary: Summary) -> str:
    if not summary.repeats:
        return ""
    items = []
    for number, repeat in enumerate(summary.repeats, start=1):
        if repeat.kind != CACHE:
            flag = '<b class="n1">likely N+1</b>' if repeat.likely_n_plus_one else ""
            what = escape(repeat.shape)
        else:
            flag = ""
            what = f"single-key reads: one {escape(batch_read_of(repeat.target))} would do"
        same = f", {repeat.identical} identical" if repeat.identical else ""
        sites = ", ".join(escape(s) for s in repeat.callsites)
        items.append(
            f'<tr id="g{number}"><td class="n">g{number}</td><td class="n">{repeat.count}×</td>'
            f'<td class="n">{repeat.ms:.3f}</td><td>{escape(repeat.target)}</td>'
            f'<td class="w">{flag}{what}{same}</td><td class="c">{sites}</td></tr>'
        )
    return (
        '<h3 class="warn">Repeated statements</h3><table><tr><th class="n">group</th>'
        '<th class="n">calls</th><th class="n">ms</th><th>target</th><th>statement</th>'
        '<th class="c">called from</th></tr>' + "".join(items) + "</table>"
    )


# What a row reads of an event through these, when its class does not override them: the
# rows of such events are made by the fast path of _event_rows, from the event's fields.
_READ = ("target", "duration_ms", "callsite", "sql", "description")
_plain_classes: dict[type, bool] = {}


def _is_plain(cls: type) -> bool:
    plain = _plain_classes.get(cls)
    if plain is None:
        plain = _plain_classes[cls] = all(
            getattr(cls, name, None) is getattr(Event, name) for name in _READ
        )
    return plain


_SIMPLE_VALUES = frozenset((int, str))


def _event_rows(
    trace: Trace, events: list[Event], summary: Summary, slow_ms: float, values: bool = True
) -> str:
    marks: dict[int, str] = {}  # id(event) -> its badges for the repeat it is in
    for number, repeat in enumerate(summary.repeats, start=1):
        flagged = repeat.kind != CACHE and repeat.likely_n_plus_one
        css, label = ("n1", "N+1") if flagged else ("dup", "repeat")
        marks.update(
            dict.fromkeys(map(id, repeat.events), f'<b class="{css}">{label} g{number}</b>')
        )
    duplicates = {id(e) for repeat in summary.repeats for e in repeat.duplicates}
    for key in duplicates:
        marks[key] = marks.get(key, "") + '<b class="dup">dup</b>'
    rows: list[str] = []
    append = rows.append
    origin = trace.start_ns
    offset_ms = trace.offset_ms
    fast_offsets = type(trace).offset_ms is _TRACE_OFFSET_MS
    statements = values and not config.settings.redact  # rendered here, with their values
    connection_ops = CONNECTION_OPS
    get_mark = marks.get
    simple = _SIMPLE_VALUES.__contains__
    # Made once per raw target, per callsite (its code's id and line: the events keep the
    # code alive) and per statement with the same values (of types that render the same
    # when equal), escaped; a run of calls from one target or one site asks once.
    targets: dict[object, str] = {}
    sites: dict[tuple[int, int], str] = {}
    rendered: dict[tuple[str, str | None, str | None, int | None, tuple[object, ...]], str] = {}
    last_class: type | None = None
    plain = False
    last_raw = last_target = last_code = last_line = last_site = None
    for index, event in enumerate(events, start=1):
        cls = type(event)
        if cls is not last_class:
            last_class, plain = cls, _is_plain(cls)
        if not plain:
            append(_event_row(trace, event, index, marks, slow_ms, values))
            continue
        op = event.op
        kind = event.kind
        end = event.end_ns
        error = event.error
        if op in connection_ops:
            classes = "o pw" if op == POOL_WAIT else "o"
        else:
            classes = "d" if kind == DB else "k"
        badges = get_mark(id(event), "")
        if error:
            classes += " err"
            badges += f'<b class="e">{escape(error)}</b>'
        if end is None:
            duration = "running"
        else:
            took = (end - event.start_ns) / 1e6
            duration = f"{took:.3f}"
            if took >= slow_ms:
                classes += " slow"
        raw = event._target
        if raw is last_raw and last_target is not None:
            target = last_target
        else:
            try:
                target = targets.get(raw)
            except TypeError:  # a target that cannot be a dict key: named per row
                target = escape(event.target)
            else:
                if target is None:
                    target = targets[raw] = escape(event.target)
            last_raw, last_target = raw, target
        statement = event.statement
        if kind == DB and statement is not None and statements and op not in connection_ops:
            params = event.params
            if type(params) is tuple and all(map(simple, map(type, params))):
                known = (statement, event.paramstyle, event.dialect, event.rows, params)
                what = rendered.get(known)  # type: ignore[assignment]
                if what is None:
                    what = rendered[known] = render_statement_escaped(
                        statement, params, event.paramstyle, event.rows, event.dialect, escape
                    )
            else:
                what = render_statement_escaped(
                    statement, params, event.paramstyle, event.rows, event.dialect, escape
                )
            if error:
                what += escape(f" [ERROR {error}]")
        else:
            what = escape(event.description(None if values else redacted(event)))
        site = event._site
        if site is None:
            called_from = ""
        else:
            code, line = site
            if code is last_code and line == last_line:
                called_from = last_site  # type: ignore[assignment]
            else:
                called_from = sites.get((id(code), line))  # type: ignore[assignment]
                if called_from is None:
                    called_from = sites[(id(code), line)] = escape(callsite_text(code, line))
                last_code, last_line, last_site = code, line, called_from
        at = (event.start_ns - origin) / 1e6 if fast_offsets else offset_ms(event)
        append(
            f'<tr class="{classes}" id="e{index}"><td>{index}</td><td>{at:.3f}</td><td></td>'
            f"<td>{target}</td><td>{duration}</td><td>{badges}{what}</td>"
            f"<td>{called_from}</td></tr>"
        )
    return "".join(rows)


def _event_row(
    trace: Trace, event: Event, index: int, marks: dict[int, str], slow_ms: float, values: bool
) -> str:
    """One row, read through the event's own properties (a stored event's)."""
    duration = event.duration_ms
    if event.op in CONNECTION_OPS:
        classes = "o pw" if event.op == POOL_WAIT else "o"
    else:
        classes = "d" if event.kind == DB else "k"
    if event.error:
        classes += " err"
    if duration is not None and duration >= slow_ms:
        classes += " slow"
    badges = marks.get(id(event), "")
    if event.error:
        badges += f'<b class="e">{escape(event.error)}</b>'
    return (
        f'<tr class="{classes}" id="e{index}"><td>{index}</td>'
        f"<td>{trace.offset_ms(event):.3f}</td><td></td>"
        f"<td>{escape(event.target)}</td><td>{_ms(duration)}</td>"
        f"<td>{badges}{escape(event.description(None if values else redacted(event)))}</td>"
        f"<td>{escape(event.callsite or '')}</td></tr>"
    )


def render_panel(
    trace: Trace,
    request: RequestInfo | None = None,
    nonce: str | None = None,
    notice: str | None = None,
    slow_ms: float = SLOW_MS,
    follow: str | None = None,
) -> str:
    """The panel's HTML for ``trace``; ``nonce`` is the page's CSP nonce, if it has one;
    calls of ``slow_ms`` or more are marked slow. ``follow``: the path the panel's script
    reads the page's own requests from (``/__ioprofiler__/traces/``), when they are followed.
    """
    summary = summarize(trace)
    elapsed_ms = trace.elapsed_ms
    findings = find(trace, slow_ms=slow_ms)
    nonce_attr = f' nonce="{escape(nonce)}"' if nonce else ""
    followed = ""
    follow_attr = ""
    if follow is not None:
        follow_attr = f' data-follow="{escape(follow)}"'
        followed = (
            '<table class="r" hidden><tr><th>method</th><th>path</th><th>status</th>'
            '<th class="n">ms</th><th class="n">calls</th><th>findings</th></tr></table>'
        )
    content = (
        f'<style{nonce_attr}>{_STYLE}</style><details class="iop" open>'
        f"<summary>{_header(summary, request, elapsed_ms, findings)}"
        f"{'<span class=r></span>' if follow is not None else ''}</summary>"
        f"{followed}{render_listing(trace, notice, slow_ms, summary=summary, findings=findings)}"
        "</details>"
    )
    if follow is None:
        script = f"(function(){{{_SCRIPT}}})();"
    else:
        script = f"{_MARK_SCRIPT}(function(){{{_FOLLOW_SCRIPT};{_SCRIPT}follow(h,r,bars)}})();"
    return (
        f'<div id="ioprofiler-panel" data-total="{elapsed_ms:.3f}"{follow_attr}>'
        f'<template shadowrootmode="open">{content}</template></div>'
        f"<script{nonce_attr}>{script}</script>"
    )


def render_note(text: str) -> str:
    """A panel body holding only a note, such as why a listing is not there."""
    return f'<div class="body"><p class="note">{escape(text)}</p></div>'


def render_listing(
    trace: Trace,
    notice: str | None = None,
    slow_ms: float = SLOW_MS,
    values: bool = True,
    *,
    summary: Summary | None = None,
    findings: list[Finding] | None = None,
) -> str:
    """The panel's body: notes, findings, targets, repeated statements and every call; the
    part a followed request opens in place. ``values=False`` writes statements without their
    bound values (``?``), as a shared store keeps them."""
    summary = summary or summarize(trace)
    findings = find(trace, slow_ms=slow_ms) if findings is None else findings
    events = trace.events
    numbers = dict(zip(map(id, events), range(1, len(events) + 1), strict=True))
    notes = ""
    if notice:
        notes += f'<p class="note">{escape(notice)}</p>'
    if summary.dropped:
        notes += (
            f'<p class="note">{counted(summary.dropped, "call")} not listed (max_events '
            "reached); the totals include them</p>"
        )
    if summary.profiler_errors:
        notes += (
            f'<p class="note">ioprofiler failed to record '
            f"{counted(summary.profiler_errors, 'call')}</p>"
        )
    listing = (
        '<h3>Calls in start order</h3><table class="l"><tr><th>#</th><th>at ms</th>'
        "<th>timeline</th><th>target</th><th>ms</th><th>what</th><th>called from</th></tr>"
        + _event_rows(trace, events, summary, slow_ms, values)
        + "</table>"
    )
    return (
        f'<div class="body">{notes}{_findings_section(findings, numbers)}'
        f"{_targets_table(summary, trace.elapsed_ms)}"
        f"{_repeats_section(summary)}{listing}</div>"
    )


_RECENT_STYLE = "body{margin:0}h1.iop{margin:0;padding:8px 12px;font-size:15px}"


def render_recent(
    entries: list[dict], nonce: str, logged: dict[str, list[dict]] | None = None
) -> str:
    """The recent requests page: one line per kept request, newest first (method, path,
    status, time, calls, findings), each opening its listing; then, by log, the requests
    a recorder kept (``logged``). ``nonce`` is for its style."""
    if entries:
        kept = "".join(_recent_request(entry) for entry in entries)
    else:
        kept = (
            '<p class="iop">No request kept yet: open a page with <code>?ioprofiler=1</code>; '
            "it is kept, and so is each fetch and XHR request its panel follows.</p>"
        )
    for path, records in (logged or {}).items():
        kept += (
            f'<h1 class="iop">The {counted(len(records), "request")} last kept in '
            f"{escape(path)}, newest first</h1>" + "".join(_recent_request(r) for r in records)
        )
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        "<title>ioprofiler: recent requests</title>"
        f'<style nonce="{escape(nonce)}">{_STYLE}{_RECENT_STYLE}</style></head><body>'
        f'<h1 class="iop">ioprofiler: the {counted(len(entries), "request")} kept, '
        f"newest first</h1>{kept}</body></html>"
    )


def _recent_request(entry: dict) -> str:
    findings = ", ".join(entry["findings"])
    flag = f'<b class="n1">{escape(findings)}</b>' if findings else ""
    return (
        f'<details class="iop" id="t{escape(entry["id"])}"><summary>'
        f"{escape(entry['method'])} {escape(entry['path'])} → {escape(entry['status'])}"
        f"<span>{entry['ms']:.1f} ms</span><span>{counted(entry['calls'], 'call')}</span>"
        f"<span>{flag}</span></summary>{entry['html']}</details>"
    )
