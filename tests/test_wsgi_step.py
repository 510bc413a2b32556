"""The WSGI body's step (ioprofiler/wsgi.py): ``_recorders.step`` in C does what its Python
reference ``python_step`` does, case by case: the result or the same exception, the error
noted for the sinks, and the open traces during and after the call."""

from __future__ import annotations

import pytest

from ioprofiler import recorders
from ioprofiler.trace import Trace, active
from ioprofiler.wsgi import python_step

STEPS = [python_step]
if recorders._recorders is not None:
    STEPS.append(recorders._recorders.step)


class Body:
    error: str | None = None

    def __init__(self, trace: Trace) -> None:
        self.trace = trace


class Refused(Exception):
    pass


def run(step, before, call, error=None):
    """What ``step`` gives for ``call`` with ``before`` open: (outcome, the traces the call
    saw, the traces after, the body's error), traces by position in ``pool``."""
    token = active.set(before)
    trace = pool[0]
    body = Body(trace)
    if error is not None:
        body.error = error
    seen = []

    def recorded(*args):
        seen.append(active.get())
        return call(*args)

    try:
        got = ("returned", step(active, body, recorded, 1, 2))
    except BaseException as exc:  # noqa: BLE001 (an interrupt must come out as it went in)
        got = ("raised", exc)
    after = active.get()
    active.reset(token)
    return got, [pool.index(t) for t in seen[0]], [pool.index(t) for t in after], body.error


pool = [Trace().start() for _ in range(3)]
exceptions = {
    "error": Refused("no"),
    "stop": StopIteration(),
    "interrupt": KeyboardInterrupt(),
}


def opens_another(*args):
    active.set(active.get() + (pool[2],))
    return args


def closes_all(*args):
    active.set(())
    return args


def raising(name):
    def call(*args):
        raise exceptions[name]

    return call


CASES = {
    "returns": ((), lambda *args: args, None),
    "with another open": ((pool[1],), lambda *args: sum(args), None),
    "open already": ((pool[0], pool[1]), lambda *args: args, None),
    "opens another": ((pool[1],), opens_another, None),
    "closes all": ((pool[1],), closes_all, None),
    "raises": ((), raising("error"), None),
    "raises, an error noted": ((), raising("error"), "EarlierError"),
    "ends an iteration": ((), raising("stop"), None),
    "interrupted": ((pool[1],), raising("interrupt"), None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_compiled_step_is_its_python_reference(case):
    before, call, error = CASES[case]
    results = [run(step, before, call, error) for step in STEPS]
    for got in results:
        assert got == results[0]
    outcome, seen, after, noted = results[0]
    assert seen[-1] == 0  # the trace recorded during the call
    if case == "raises":
        assert outcome == ("raised", exceptions["error"]) and noted == "Refused"
    if case in ("ends an iteration", "interrupted"):
        assert noted is None
    if case == "opens another":
        assert after == [1, 2]
    if case == "open already":
        assert after == [1]  # the trace taken out wherever it was, as Trace.call does


def test_the_compiled_step_is_in_use_where_built():
    from ioprofiler import wsgi

    expected = recorders._recorders.step if recorders._recorders is not None else python_step
    assert wsgi._step is expected
