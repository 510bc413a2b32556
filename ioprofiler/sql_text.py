"""SQL for people: one line, whitespace folded, parameters in place as SQL literals.

>>> render_statement("SELECT *\\n  FROM t WHERE id = ? AND name = ?", (5, "O'Brien"), "qmark")
"SELECT * FROM t WHERE id = 5 AND name = 'O''Brien'"

Placeholders are found with a small scanner that steps over string literals,
quoted identifiers and comments, for every DB-API paramstyle SQLAlchemy
dialects use: qmark ``?``, format ``%s``, pyformat ``%(name)s``, named ``:name``,
numeric ``:1`` and numeric_dollar ``$1``; and psycopg 3's (pyformat with ``%b``, ``%t``).
"""

from __future__ import annotations

import datetime
import decimal
import enum
import functools
import math
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from ioprofiler.values import MAX_BYTES, MAX_ITEMS, MAX_TEXT_CHARS, Clipped

MAX_LITERAL_CHARS = MAX_TEXT_CHARS
MAX_SEQUENCE_ITEMS = MAX_ITEMS
_BACKSLASH_DIALECTS = ("mysql", "mariadb")

# Every literal and comment pattern also matches when unterminated, up to the end of the
# text (and a backslash may be the last character): a stray quote then costs one pass,
# instead of a retry from every later position, which made long statements quadratic.
_STANDARD_STRING = r"'(?:[^']|'')*(?:'|\Z)"
_MYSQL_STRING = r"'(?:[^'\\]|\\.?|'')*(?:'|\Z)"
_POSTGRES_STRING = (
    r"(?<!\w)[Ee]'(?:[^'\\]|\\.?|'')*(?:'|\Z)"  # E'...' strings take backslash escapes
    r"|\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?(?:\$(?P=tag)\$|\Z)"  # $tag$ ... $tag$
    r"|" + _STANDARD_STRING
)
_STANDARD_IDENTIFIER = r"\"(?:[^\"]|\"\")*(?:\"|\Z)|`[^`]*(?:`|\Z)"  # SQLite takes `x` too
_MYSQL_IDENTIFIER = r"\"(?:[^\"\\]|\\.?|\"\")*(?:\"|\Z)|`[^`]*(?:`|\Z)"
_STANDARD_COMMENT = r"--[^\n]*|/\*.*?(?:\*/|\Z)"
_MYSQL_COMMENT = r"--(?=\s|\Z)[^\n]*|\#[^\n]*|/\*.*?(?:\*/|\Z)"
_FAMILIES = {  # family -> (string literal, quoted identifier, comment)
    "standard": (_STANDARD_STRING, _STANDARD_IDENTIFIER, _STANDARD_COMMENT),
    "mysql": (_MYSQL_STRING, _MYSQL_IDENTIFIER, _MYSQL_COMMENT),
    "postgresql": (_POSTGRES_STRING, _STANDARD_IDENTIFIER, _STANDARD_COMMENT),
}
_PLACEHOLDERS = {
    "qmark": r"(?P<q>\?)",
    "format": r"(?P<pct>%%)|(?P<q>%s)",
    "pyformat": r"(?P<pct>%%)|%\((?P<name>[^)]+)\)s|(?P<q>%s)",
    # psycopg 3: pyformat, and %b / %t (a value passed in binary / text format)
    "psycopg": r"(?P<pct>%%)|%\((?P<name>[^)]+)\)[sbt]|(?P<q>%[sbt])",
    "named": r"(?P<cast>::)|(?<![:\w]):(?P<name>[A-Za-z_]\w*)",
    "numeric": r"(?P<cast>::)|(?<![:\w]):(?P<num>\d+)",
    "numeric_dollar": r"\$(?P<num>\d+)",
}
_scanners: dict[tuple[str, str | None], re.Pattern[str]] = {}


def _family(dialect: str | None) -> str:
    if dialect in ("mysql", "mariadb"):
        return "mysql"
    return "postgresql" if dialect == "postgresql" else "standard"


def _scanner(dialect: str | None, paramstyle: str | None) -> re.Pattern[str]:
    """The tokenizer for one dialect family and paramstyle (``None``: placeholders not bound)."""
    family = _family(dialect)
    style = paramstyle if paramstyle in _PLACEHOLDERS else None
    key = (family, style)
    scanner = _scanners.get(key)
    if scanner is None:
        string, identifier, comment = _FAMILIES[family]
        pattern = rf"(?P<quoted>{string}|{identifier})|(?P<comment>{comment})|(?P<space>\s+)"
        if style is not None:
            pattern += "|" + _PLACEHOLDERS[style]
        scanner = _scanners[key] = re.compile(pattern, re.S)
    return scanner


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def visible(text: str) -> str:
    """Control characters as escapes, so a line stays one line and cannot drive a terminal."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub(_escape_control, text)


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{ord(char):02x}")


def literal(value: Any, backslash_escapes: bool = False) -> str:
    """A Python value as the SQL literal a person would type in a console.

    ``backslash_escapes`` doubles backslashes in strings, as MySQL and MariaDB read them.
    """
    kind = type(value)
    if kind is int:
        return str(value)
    if kind is str:
        return _quote(value, backslash_escapes)
    if value is None:
        return "NULL"
    if value is True:
        return "TRUE"
    if value is False:
        return "FALSE"
    if isinstance(value, enum.Enum):
        return literal(value.value, backslash_escapes)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"'{value!r}'"
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        return _hex(data[:MAX_BYTES], len(data))
    if isinstance(value, datetime.datetime):
        return _quote(value.isoformat(sep=" "))
    if isinstance(value, (datetime.date, datetime.time, uuid.UUID)):
        return _quote(str(value))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        return _items(items[:MAX_SEQUENCE_ITEMS], len(items), backslash_escapes)
    if isinstance(value, Clipped):  # a long value, as the trace kept it
        head = value.head
        if isinstance(head, bytes):
            return _hex(head, value.length)
        if isinstance(head, tuple):
            return _items(head, value.length, backslash_escapes)
        return _quote(head, backslash_escapes, value.length)
    return _quote(value if isinstance(value, str) else str(value), backslash_escapes)


def _hex(head: bytes, length: int) -> str:
    more = f"…(+{length - len(head)} bytes)" if length > len(head) else ""
    return f"X'{head.hex().upper()}'{more}"


def _items(head: Any, length: int, backslash_escapes: bool) -> str:
    shown = ", ".join(literal(v, backslash_escapes) for v in head)
    if length > len(head):
        shown += f", …(+{length - len(head)} more)"
    return f"({shown})"


def _quote(text: str, backslash_escapes: bool = False, length: int | None = None) -> str:
    """``length``: of the whole text, when ``text`` is only its start."""
    length = len(text) if length is None else length
    more = ""
    if length > MAX_LITERAL_CHARS:
        more = f"…(+{length - MAX_LITERAL_CHARS} chars)"
        text = text[:MAX_LITERAL_CHARS]
    if backslash_escapes:
        text = text.replace("\\", "\\\\")
    return "'" + text.replace("'", "''") + "'" + more


# A statement cut into its folded text and its placeholders: (kind, key, original text),
# kind being "seq" (?, %s), "name" (:name, %(name)s) or "num" (:1, $1).
Placeholder = tuple[str, Any, str]


@functools.lru_cache(maxsize=4096)
def _template(
    statement: str, dialect: str | None, paramstyle: str | None, bound: bool
) -> tuple[str | Placeholder, ...]:
    """Tokenize a statement once: the same text recurs in every call of an N+1."""
    scanner = _scanner(dialect, paramstyle if bound else None)
    # format and pyformat drivers apply Python's % to the whole text, literals included.
    unescape_percent = bound and paramstyle in ("format", "pyformat", "psycopg")
    parts: list[str | Placeholder] = []
    text: list[str] = []
    position = 0
    for match in scanner.finditer(statement):
        text.append(statement[position : match.start()])
        position = match.end()
        kind = match.lastgroup
        token = match.group()
        if kind == "quoted":
            text.append(token.replace("%%", "%") if unescape_percent else token)
        elif kind == "space":
            text.append(" ")
        elif kind == "comment":
            if token.startswith(("--", "#")):
                # Folded onto one line, a line comment would swallow the rest.
                body = token[2:] if token.startswith("--") else token[1:]
                token = "/* " + body.strip().replace("*/", "* /") + " */"
            text.append(" ".join(token.split()))
        elif kind == "pct":
            text.append("%")
        elif kind == "cast":
            text.append("::")
        else:
            parts.append("".join(text))
            text = []
            if kind == "name":
                parts.append(("name", match.group("name"), token))
            elif kind == "num":
                parts.append(("num", match.group("num"), token))
            else:
                parts.append(("seq", None, token))
    text.append(statement[position:])
    parts.append("".join(text))
    if isinstance(parts[0], str):
        parts[0] = parts[0].lstrip()
    if isinstance(parts[-1], str):
        parts[-1] = parts[-1].rstrip()
    return tuple(p for p in parts if p != "")


class _Binder:
    """Hands out parameter values in the order placeholders ask for them."""

    def __init__(self, params: Any, redact: bool, backslash_escapes: bool = False) -> None:
        self.params = params
        self.redact = redact
        self.backslash_escapes = backslash_escapes
        self.position = 0

    def value(self, placeholder: Placeholder) -> str:
        if self.redact:
            return "?"
        kind, key, original = placeholder
        params = self.params
        try:
            if kind == "name":
                value = params[key]
            elif kind == "num":
                if isinstance(params, Mapping):
                    value = params[key]
                elif int(key) < 1:  # $0 and :0 name no parameter
                    return original
                else:
                    value = params[int(key) - 1]
            elif isinstance(params, Mapping):
                return original
            else:
                value = params[self.position]
                self.position += 1
        except (KeyError, IndexError, TypeError):
            return original
        return literal(value, self.backslash_escapes)

    def fill(self, parts: tuple[str | Placeholder, ...]) -> str:
        return "".join([part if type(part) is str else self.value(part) for part in parts])


def render_statement(
    statement: str,
    params: Any,
    paramstyle: str | None,
    rows: int | None = None,
    redact: bool = False,
    dialect: str | None = None,
) -> str:
    """The statement on one line, with ``params`` in place; when ``redact``, every value
    is ``?``, bound or written in the statement (``name = 's3cr3t'`` too).

    ``rows`` is the row count of an executemany; ``params`` then holds its first row.
    ``dialect`` (SQLAlchemy's dialect name) decides how string literals are escaped.
    Never raises: a statement that cannot be interpolated is shown with its parameters.
    """
    try:
        bound = params is not None or rows is not None
        if redact:
            text = _redacted(statement, dialect, paramstyle, bound)
        elif bound:
            binder = _Binder(
                () if params is None else params, False, dialect in _BACKSLASH_DIALECTS
            )
            text = binder.fill(_template(statement, dialect, paramstyle, bound))
        else:
            text = "".join(_template(statement, dialect, paramstyle, bound))  # type: ignore[arg-type]
    except Exception:
        text = _unrendered(statement, params, redact)
    if rows is not None:
        text += f" -- executemany: {rows} row{'s' if rows != 1 else ''}"
    return visible(text)


def render_statement_escaped(
    statement: str,
    params: Any,
    paramstyle: str | None,
    rows: int | None,
    dialect: str | None,
    escape: Callable[[str], str],
) -> str:
    """``escape(render_statement(statement, params, paramstyle, rows, False, dialect))``,
    made faster for a listing of many calls: the text between a statement's placeholders
    is escaped once per statement, only the values once per call.

    ``escape`` must map text character by character (``escape(a + b) == escape(a) +
    escape(b)``), as ``html.escape`` does, and leave digits and ``-`` as they are.
    """
    try:
        if params is None and rows is None:
            parts = _escaped_template(statement, dialect, paramstyle, False, escape)
            return "".join(parts)  # type: ignore[arg-type]
        parts = _escaped_template(statement, dialect, paramstyle, True, escape)
        if params is None:
            params = ()
        backslash_escapes = dialect in _BACKSLASH_DIALECTS
        mapping = isinstance(params, Mapping)
        out: list[str] = []
        append = out.append
        position = 0
        for part in parts:
            if type(part) is str:
                append(part)
                continue
            kind, key, original = part  # type: ignore[misc]
            try:
                if kind == "name":
                    value = params[key]
                elif kind == "num":
                    if mapping:
                        value = params[key]
                    elif int(key) < 1:  # $0 and :0 name no parameter
                        append(escape(visible(original)))
                        continue
                    else:
                        value = params[int(key) - 1]
                elif mapping:
                    append(escape(visible(original)))
                    continue
                else:
                    value = params[position]
                    position += 1
            except (KeyError, IndexError, TypeError):
                append(escape(visible(original)))
                continue
            if type(value) is int:  # digits and "-": nothing to escape
                append(str(value))
            else:
                append(escape(visible(literal(value, backslash_escapes))))
        if rows is not None:
            append(f" -- executemany: {rows} row{'s' if rows != 1 else ''}")
        return "".join(out)
    except Exception:  # the slow path, which never raises, says what went wrong
        return escape(render_statement(statement, params, paramstyle, rows, False, dialect))


_escaped_templates: dict[tuple[Any, ...], tuple[str | Placeholder, ...]] = {}


def _escaped_template(
    statement: str,
    dialect: str | None,
    paramstyle: str | None,
    bound: bool,
    escape: Callable[[str], str],
) -> tuple[str | Placeholder, ...]:
    """:func:`_template` with its text escaped (``visible``, then ``escape``)."""
    key = (statement, dialect, paramstyle, bound, escape)
    parts = _escaped_templates.get(key)
    if parts is None:
        parts = tuple(
            escape(visible(part)) if type(part) is str else part
            for part in _template(statement, dialect, paramstyle, bound)
        )
        if len(_escaped_templates) >= 4096:
            _escaped_templates.clear()
        _escaped_templates[key] = parts
    return parts


def _unrendered(statement: Any, params: Any, redact: bool) -> str:
    """The statement as it came, and its parameters as Python shows them; never raises."""
    text = " ".join(_safe_str(statement).split())
    if redact:
        return _fold_literals(text, None)
    if params is not None:
        text += f" -- params: {safe_repr(params)}"
    return text


def _safe_str(value: Any) -> str:
    try:
        return str(value)
    except Exception:
        return object.__repr__(value)


def safe_repr(value: Any) -> str:
    """``repr(value)``, or a stand-in for each object whose own ``__repr__`` fails."""
    try:
        return repr(value)
    except Exception:
        pass
    if isinstance(value, tuple):
        inner = ", ".join(safe_repr(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(safe_repr(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{safe_repr(k)}: {safe_repr(v)}" for k, v in value.items()) + "}"
    return object.__repr__(value)


_shape_scanners: dict[str, re.Pattern[str]] = {}
_NUMBER = r"(?<![\w.])-?\d+(?:\.\d+)?(?![\w.])"


def _shape_scanner(dialect: str | None) -> re.Pattern[str]:
    family = _family(dialect)
    scanner = _shape_scanners.get(family)
    if scanner is None:
        string, identifier, _ = _FAMILIES[family]
        scanner = _shape_scanners[family] = re.compile(
            rf"(?P<identifier>{identifier})|(?P<value>{string}|{_NUMBER})", re.S
        )
    return scanner


# A list of two or more values, or an IN list of any length (an IN of one value is the
# same query as an IN of twelve, as an expanding parameter sends them).
_IN_LIST = re.compile(r"(?P<in>\bIN\s*)?\(\s*\?(?P<more>(?:\s*,\s*\?)*)\s*\)", re.I)


def _collapse(match: re.Match[str]) -> str:
    if match.group("in") is None and not match.group("more"):
        return match.group()
    return (match.group("in") or "") + "(?…)"


def shape(statement: str, paramstyle: str | None, dialect: str | None = None) -> str:
    """The statement with every value, bound or inline, as ``?``; IN lists collapsed.

    Two calls with the same shape differ only in their values: run in a loop, they are
    the signature of an N+1.
    """
    try:
        return _shape(statement, paramstyle, dialect)
    except Exception:
        return visible(" ".join(_safe_str(statement).split()))


# Larger than a trace's max_events: the panel, the findings and Server-Timing each fold a
# 10,000-statement trace; only the first pays for statements that all differ.
@functools.lru_cache(maxsize=16384)
def _shape(statement: str, paramstyle: str | None, dialect: str | None) -> str:
    return visible(_IN_LIST.sub(_collapse, _redacted(statement, dialect, paramstyle, True)))


@functools.lru_cache(maxsize=4096)
def _redacted(statement: str, dialect: str | None, paramstyle: str | None, bound: bool) -> str:
    """The statement on one line with every value, bound or inline, as ``?``."""
    text = _Binder((), redact=True).fill(_template(statement, dialect, paramstyle, bound))
    return _fold_literals(text, dialect)


def _fold_literals(text: str, dialect: str | None) -> str:
    """``name = 's3cr3t' AND n > 5`` -> ``name = ? AND n > ?``; quoted identifiers stay."""

    def literal_to_mark(match: re.Match[str]) -> str:
        return match.group() if match.lastgroup == "identifier" else "?"

    return _shape_scanner(dialect).sub(literal_to_mark, text)
