"""Changing a finished response: the panel into HTML, the listing into text, Server-Timing.

Framework-neutral: a response is a status line, a header list and the body bytes, so the
same code serves the WSGI middleware and, later, ASGI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ioprofiler import config
from ioprofiler.analysis import summarize
from ioprofiler.event import CACHE, DB, HTTP, POOL_WAIT
from ioprofiler.findings import find
from ioprofiler.headers import http_token, sf_string
from ioprofiler.render.request import RequestInfo
from ioprofiler.roundtrip_text import op_count, ordered_ops
from ioprofiler.words import counted

if TYPE_CHECKING:
    from ioprofiler.trace import Trace

HTML_TYPES = ("text/html",)  # not XHTML: the panel is HTML, not well-formed XML
CHANGEABLE_TYPES = (*HTML_TYPES, "text/plain")
MAX_SERVER_TIMING = 2000  # characters; proxies refuse long headers (nginx: 4 KB for all)
_NONCE = re.compile(r"'nonce-([A-Za-z0-9+/=_-]+)'")
_CHANGED_BODY_DROPS = {"content-length", "etag", "last-modified", "content-md5", "cache-control"}


@dataclass
class ResponseParts:
    status: str
    headers: list[tuple[str, str]]
    body: bytes

    @property
    def status_code(self) -> int:
        head = self.status.split(" ", 1)[0]
        return int(head) if head.isdigit() else 0

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def media_type(self) -> str:
        return (self.header("Content-Type") or "").split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str:
        match = re.search(r"charset=\"?([\w.:-]+)", self.header("Content-Type") or "", re.I)
        return match.group(1).lower() if match else "utf-8"

    @property
    def is_encoded(self) -> bool:
        encoding = (self.header("Content-Encoding") or "identity").strip().lower()
        return encoding not in ("", "identity")

    @property
    def csp_nonce(self) -> str | None:
        for key, value in self.headers:
            if key.lower() == "content-security-policy":
                match = _NONCE.search(value)
                if match:
                    return match.group(1)
        return None

    def why_panel_cannot_follow(self) -> str | None:
        """Why the page's Content-Security-Policy keeps the panel from following the page's
        requests (its inline script may not run, or may not fetch from this site), or None.
        """
        for key, value in self.headers:
            if key.lower() != "content-security-policy":
                continue
            sources = _csp_directives(value)
            if _blocks_inline_script(sources):
                return (
                    "this page's Content-Security-Policy lets no inline script run and has "
                    "no nonce for the panel's: its fetch and XHR requests are not followed "
                    "(add a 'nonce-…' to script-src and style-src; the panel uses it)"
                )
            if _blocks_fetching_this_site(sources):
                return (
                    "this page's Content-Security-Policy does not let the panel fetch from "
                    "this site ('self' is not in connect-src): its fetch and XHR requests "
                    "are not followed"
                )
        return None

    def passed_through(
        self, trace: Trace, slow_ms: float | None = None, streamed: bool = False
    ) -> list[tuple[str, str]]:
        """Headers for a body sent as it is: ``no-store``, since a profiled response must
        never be served from a shared cache to someone else, and Server-Timing unless the
        body is ``streamed`` (see :func:`is_stream`): made before the I/O a stream runs,
        it would be false. ``slow_ms``: the threshold of its findings entry."""
        headers = [(k, v) for k, v in self.headers if k.lower() != "cache-control"]
        headers.append(("Cache-Control", "no-store"))
        if not streamed:
            headers.append(("Server-Timing", server_timing(trace, slow_ms)))
        return headers

    def with_new_body(
        self,
        body: bytes,
        trace: Trace,
        content_type: str | None = None,
        slow_ms: float | None = None,
    ) -> ResponseParts:
        """The same response with ``body``: Content-Length corrected, validators dropped,
        ``Cache-Control: no-store``, Server-Timing added (its findings judged by ``slow_ms``)."""
        headers = [(k, v) for k, v in self.headers if k.lower() not in _CHANGED_BODY_DROPS]
        if content_type is not None:
            headers = [(k, v) for k, v in headers if k.lower() != "content-type"]
            headers.append(("Content-Type", content_type))
        headers += [
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("Server-Timing", server_timing(trace, slow_ms)),
        ]
        return ResponseParts(self.status, headers, body)


def _csp_directives(policy: str) -> dict[str, list[str]]:
    """``"script-src 'self'; default-src 'none'"`` as ``{"script-src": ["'self'"], …}``;
    the first of a repeated directive counts, as in browsers."""
    directives: dict[str, list[str]] = {}
    for directive in policy.split(";"):
        words = directive.lower().split()
        if words and words[0] not in directives:
            directives[words[0]] = words[1:]
    return directives


def _blocks_inline_script(sources: dict[str, list[str]]) -> bool:
    """Whether an inline script without a nonce may not run; browsers ignore
    ``'unsafe-inline'`` beside a nonce or a hash."""
    script = sources.get("script-src-elem", sources.get("script-src", sources.get("default-src")))
    if script is None or _NONCE.search(" ".join(script)):
        return False
    hashed = any(source.startswith("'sha") for source in script)
    return "'unsafe-inline'" not in script or hashed


def _blocks_fetching_this_site(sources: dict[str, list[str]]) -> bool:
    connect = sources.get("connect-src", sources.get("default-src"))
    return connect is not None and not {"'self'", "*"} & set(connect)


def is_stream(status: str, headers: list[tuple[str, str]], body: object = None) -> bool:
    """Whether a body passed through may still run the application's I/O after its headers
    are sent: not a WSGI ``body`` list or tuple, not of a declared Content-Length, not a 204
    or 304 (which have none). A CSV export that runs a query per row is one; a JSON
    response, made before it was returned, is not.

    >>> is_stream("200 OK", [("Content-Type", "text/csv")], (row for row in rows))
    True
    """
    parts = ResponseParts(status, headers, b"")
    if isinstance(body, (list, tuple)) or parts.status_code in (204, 304):
        return False
    return parts.header("Content-Length") is None


def server_timing(trace: Trace, slow_ms: float | None = None) -> str:
    """``db;dur=3.2;desc="8 queries", cache;dur=0.9;desc="3 calls, 2 hits", db-dbshard01;…``

    ``slow_ms`` is the surface's threshold for slow calls, so the ``findings`` entry names
    the findings its panel and JSON show (None: ``ioprofiler.configure``'s). Safe whatever
    the targets are named (see :mod:`ioprofiler.headers`), and at most
    about :data:`MAX_SERVER_TIMING` characters: targets past that are counted, not listed.
    """
    summary = summarize(trace)
    entries = []
    db_calls = summary.calls_of(DB)
    db_desc = _with_ops(counted(db_calls, "query"), summary.ops_of(DB))
    entries.append(f"db;dur={summary.ms_of(DB):.3f};desc={sf_string(db_desc)}")
    cache_calls = summary.calls_of(CACHE)
    cache_desc = (
        f"{counted(cache_calls, 'call')}, {counted(summary.hits, 'hit')}, "
        f"{counted(summary.misses, 'miss')}"
    )
    cache_desc = _with_ops(cache_desc, summary.ops_of(CACHE))
    entries.append(f"cache;dur={summary.ms_of(CACHE):.3f};desc={sf_string(cache_desc)}")
    http_calls = summary.calls_of(HTTP)
    if http_calls:
        http_desc = sf_string(counted(http_calls, "call"))
        entries.append(f"http;dur={summary.ms_of(HTTP):.3f};desc={http_desc}")
    waits = summary.ops_of().get(POOL_WAIT)
    if waits is not None:  # usually the answer: its own entry, first to read in devtools
        wait_desc = sf_string(op_count(POOL_WAIT, waits.count))
        entries.append(f"pool-wait;dur={waits.ms:.3f};desc={wait_desc}")
    entries.append(f"app;dur={summary.unexplained_ms:.3f};desc={sf_string('not in I/O')}")
    findings = findings_description(trace, slow_ms)
    if findings:
        entries.append(f"findings;desc={sf_string(findings)}")
    size = sum(len(e) + 2 for e in entries)
    left_out = 0
    for total in summary.targets:
        unit = "query" if total.kind == DB else "call"
        name = http_token(f"{total.kind}-{total.target}")
        desc = sf_string(f"{total.target}: {counted(total.calls, unit)}")
        entry = f"{name};dur={total.ms:.3f};desc={desc}"
        if left_out or size + len(entry) + 2 > MAX_SERVER_TIMING:
            left_out += 1
            continue
        entries.append(entry)
        size += len(entry) + 2
    if left_out:
        more = sf_string(f"{counted(left_out, 'target')} not listed")
        entries.append(f"more;desc={more}")
    return ", ".join(entries)


def _with_ops(text: str, ops: dict) -> str:
    """``8 queries, 1 pool wait, 2 commits``."""
    return ", ".join([text] + [op_count(op, t.count) for op, t in ordered_ops(ops)])


def findings_description(trace: Trace, slow_ms: float | None = None) -> str:
    """``N+1 x2, serial fan-out``: the kinds found (``sf_string`` bounds its length)."""
    counts: dict[str, int] = {}
    for finding in find(trace, slow_ms=slow_ms):
        counts[finding.title] = counts.get(finding.title, 0) + 1
    return ", ".join(f"{title} x{n}" if n > 1 else title for title, n in counts.items())


def _inject_html(
    parts: ResponseParts,
    trace: Trace,
    request: RequestInfo,
    notice: str | None,
    slow_ms: float,
    follow: str | None = None,
) -> ResponseParts | None:
    from ioprofiler.render.html import render_follow_marker, render_panel

    charset = parts.charset
    if charset.startswith(("utf-16", "utf-32", "utf16", "utf32")):
        return None  # not ASCII-compatible: the panel's bytes would not fit in
    blocked = parts.why_panel_cannot_follow() if follow is not None else None
    if blocked is not None:
        notice, follow = (f"{notice}; {blocked}" if notice else blocked), None
    panel = render_panel(trace, request, parts.csp_nonce, notice, slow_ms, follow)
    # ASCII with character references fits any ASCII-compatible charset, whatever the page
    # declares, in its headers or in a <meta> tag.
    encoded = panel.encode("ascii", "xmlcharrefreplace")
    body = parts.body
    if follow is not None:
        body = _with_marker_first(body, render_follow_marker(parts.csp_nonce).encode("ascii"))
    at = body.lower().rfind(b"</body>")
    body = body + encoded if at < 0 else body[:at] + encoded + body[at:]
    return parts.with_new_body(body, trace, slow_ms=slow_ms)


_SCRIPT_TAG = re.compile(rb"<script[\s>]", re.I)


def _with_marker_first(body: bytes, marker: bytes) -> bytes:
    """``body`` with the script that marks the page's requests just before the page's
    first script, so that it runs before any of them; no page script, no separate marker
    (the panel's own script marks them too). Nothing moves the page's ``<meta charset>``."""
    found = _SCRIPT_TAG.search(body)
    if found is None:
        return body
    return body[: found.start()] + marker + body[found.start() :]


def decorate(
    parts: ResponseParts,
    trace: Trace,
    request: RequestInfo,
    notice: str | None = None,
    slow_ms: float = config.DEFAULT_SLOW_MS,
    follow: str | None = None,
) -> ResponseParts:
    """``?ioprofiler=1``: the panel into HTML, the listing onto text/plain, and
    Server-Timing on everything; ``follow``: where the panel reads the traces of the
    page's own requests, when it follows them."""
    from ioprofiler.render.text import listing

    media_type = parts.media_type
    if media_type in HTML_TYPES and not parts.is_encoded:
        changed = _inject_html(parts, trace, request, notice, slow_ms, follow)
        if changed is not None:
            return changed
    if media_type == "text/plain" and not parts.is_encoded:
        text = "\n\n" + listing(trace, callsites=True, slow_ms=slow_ms) + "\n"
        body = parts.body + _encode(text, parts.charset)
        return parts.with_new_body(body, trace, slow_ms=slow_ms)
    return ResponseParts(parts.status, parts.passed_through(trace, slow_ms), parts.body)


def _encode(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset, "backslashreplace")
    except LookupError:  # a charset Python does not know
        return text.encode("utf-8", "backslashreplace")


def build_document(
    trace: Trace, request: RequestInfo, mode: str, slow_ms: float | None = None
) -> ResponseParts:
    """``?ioprofiler=text`` or ``=json``: the trace instead of the page, under the page's
    own status, so ``curl -f`` and scripts still see a 404 or a 500."""
    original = ResponseParts(request.status or "200 OK", [], b"")
    if mode == "json":
        from ioprofiler.render.json import render_json

        body = render_json(trace, request, slow_ms).encode("utf-8", "backslashreplace")
        return original.with_new_body(body, trace, "application/json", slow_ms)
    from ioprofiler.render.text import listing
    from ioprofiler.sql_text import visible

    head = f"{visible(request.status)}\n{visible(request.method)} {visible(request.path)}\n\n"
    text = listing(trace, callsites=True, slow_ms=slow_ms)
    body = (head + text + "\n").encode("utf-8", "backslashreplace")
    return original.with_new_body(body, trace, "text/plain; charset=utf-8", slow_ms)


def render_failure(exc: BaseException) -> ResponseParts:
    """What ``?ioprofiler=text`` or ``=json`` answer when the trace cannot be rendered."""
    body = (
        f"ioprofiler could not render this request's trace ({type(exc).__name__}); "
        "the server's log has the details.\n"
    ).encode()
    headers = [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ]
    return ResponseParts("500 Internal Server Error", headers, body)
