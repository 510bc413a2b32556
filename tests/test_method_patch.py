"""MethodPatch (ioprofiler/_patch.c): a class's function patched so that an idle call is one
context-variable read, and that behaves as wrapt's wrapper does everywhere else."""

from __future__ import annotations

import copy
import functools
import gc
import inspect
import operator
import os
import pickle
import subprocess
import sys
import types
import weakref
from contextvars import ContextVar

import pytest
from pymemcache.client.base import Client

import ioprofiler
from ioprofiler import patching
from ioprofiler.patching import IOProfilerWrapper, Patches, is_ours

if not patching.compiled_patches:
    if os.environ.get("IOPROFILER_REQUIRE_SPEEDUPS") == "1":
        pytest.fail("ioprofiler._patch is not built, and IOPROFILER_REQUIRE_SPEEDUPS=1")
    pytest.skip("ioprofiler._patch is not built here", allow_module_level=True)

from ioprofiler._patch import BoundMethodPatch, MethodPatch  # noqa: E402

switch: ContextVar[tuple[int, ...]] = ContextVar("test_switch", default=())


class Shop:
    """A class whose methods take every shape of argument."""

    def lookup(self, key, default=None, *more, flag=False, **extra):
        """Look a key up."""
        if key == "boom":
            raise LookupError(key)
        return (key, default, more, flag, extra)


class Recorder:
    def __init__(self):
        self.seen = []

    def __call__(self, wrapped, instance, args, kwargs):
        self.seen.append((wrapped, instance, args, dict(kwargs)))
        return wrapped(*args, **kwargs)


def patched_class(kind: str, recorder: Recorder, var=switch):
    cls = type("Shop", (Shop,), {"lookup": Shop.__dict__["lookup"]})
    original = cls.__dict__["lookup"]
    if kind == "compiled":
        cls.lookup = MethodPatch(original, recorder, var)
    else:
        cls.lookup = IOProfilerWrapper(original, recorder, enabled=var.get if var else None)
    return cls


CALLS = {
    "positional": lambda shop, cls: shop.lookup("k"),
    "keywords": lambda shop, cls: shop.lookup(key="k", flag=True, other=1),
    "varargs": lambda shop, cls: shop.lookup("k", 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, flag=2),
    "through the class": lambda shop, cls: cls.lookup(shop, "k", default=0),
    "bound first": lambda shop, cls: (lambda f: f("k", 5))(shop.lookup),
    "many bound": lambda shop, cls: (lambda f: f(*range(12), flag=1, x=2))(shop.lookup),
    "methodcaller": lambda shop, cls: operator.methodcaller("lookup", "k")(shop),
    "partial": lambda shop, cls: functools.partial(shop.lookup, "k")(flag=3),
    "map": lambda shop, cls: list(map(shop.lookup, ["a", "b"])),
    "super": lambda shop, cls: type(
        "Sub", (cls,), {"lookup": lambda s, k: super(type(s), s).lookup(k)}
    )().lookup("k"),
    "star-args": lambda shop, cls: shop.lookup(*("k", 1), **{"flag": 1}),
}


@pytest.mark.parametrize("call", CALLS, ids=list(CALLS))
def test_calls_reach_the_wrapper_exactly_as_with_wrapt(call):
    outcomes = {}
    for kind in ("wrapt", "compiled"):
        recorder = Recorder()
        cls = patched_class(kind, recorder)
        shop = cls()
        idle = CALLS[call](shop, cls)
        assert recorder.seen == []  # no trace open: the wrapper is not called
        token = switch.set((1,))
        try:
            recording = CALLS[call](shop, cls)
        finally:
            switch.reset(token)
        assert recording == idle
        outcomes[kind] = [
            (type(instance).__name__, args, kw) for _, instance, args, kw in recorder.seen
        ]
        assert recorder.seen, "the wrapper ran while the switch was on"
    assert outcomes["compiled"] == outcomes["wrapt"]
    # wrapt hands a method called through its class a partial of the function; this hands
    # every call the function bound to the instance
    assert all(w.__func__ is Shop.lookup and w.__self__ is i for w, i, _, _ in recorder.seen)


@pytest.mark.parametrize("on", [False, True])
def test_the_functions_own_error_reaches_the_caller_unchanged(on):
    recorder = Recorder()
    cls = patched_class("compiled", recorder)
    token = switch.set((1,) if on else ())
    try:
        with pytest.raises(LookupError) as raised:
            cls().lookup("boom")
        with pytest.raises(TypeError, match="missing 1 required positional argument: 'key'"):
            cls().lookup()
        with pytest.raises(TypeError, match="missing 2 required positional arguments"):
            cls.lookup()
    finally:
        switch.reset(token)
    assert raised.value.args == ("boom",)
    assert len(recorder.seen) == (2 if on else 0)  # lookup("boom") and lookup()


def test_without_a_switch_the_wrapper_runs_on_every_call():
    recorder = Recorder()
    cls = patched_class("compiled", recorder, var=None)
    assert cls().lookup("k")[0] == "k"
    assert len(recorder.seen) == 1
    assert cls.lookup._ioprofiler_var is None and cls.lookup._ioprofiler_wrapper is recorder


def test_it_reads_as_the_function_from_the_class_and_as_a_method_from_an_instance():
    cls = patched_class("compiled", Recorder())
    plain = Shop.lookup
    shop = cls()
    assert cls.lookup.__wrapped__ is plain
    assert not hasattr(shop.lookup, "__wrapped__")  # OpenTelemetry skips what shows it
    for name in ("__name__", "__qualname__", "__doc__", "__module__", "__defaults__"):
        assert getattr(cls.lookup, name) == getattr(plain, name)
        assert getattr(shop.lookup, name) == getattr(plain, name)
    assert inspect.signature(cls.lookup) == inspect.signature(plain)
    assert inspect.signature(shop.lookup) == inspect.signature(Shop().lookup)
    assert isinstance(cls.lookup, types.FunctionType) and inspect.isfunction(cls.lookup)
    assert isinstance(shop.lookup, types.MethodType) and inspect.ismethod(shop.lookup)
    assert type(shop.lookup) is BoundMethodPatch
    assert shop.lookup.__self__ is shop and shop.lookup.__func__ is Shop.lookup
    assert shop.lookup == shop.lookup and hash(shop.lookup) == hash(shop.lookup)
    assert shop.lookup != cls().lookup
    assert repr(cls.lookup) == repr(plain)
    assert repr(shop.lookup).startswith("<bound method Shop.lookup of <")
    with pytest.raises(AttributeError):
        shop.lookup.no_such_attribute  # noqa: B018
    cls.lookup.marker = "set on the function"
    assert plain.marker == "set on the function"
    del plain.marker


class Picklable:
    def lookup(self, key):
        return key


def test_pickle_copy_and_weak_references_behave_as_for_the_function():
    plain_function = pickle.dumps(Picklable.lookup)
    plain_bound = pickle.dumps(Picklable().lookup)
    patches = Patches()
    patches.wrap(Picklable, "lookup", Recorder())
    try:
        assert type(vars(Picklable)["lookup"]) is MethodPatch
        assert pickle.dumps(Picklable.lookup) == plain_function
        assert pickle.loads(plain_function) is vars(Picklable)["lookup"]
        bound = Picklable().lookup
        assert pickle.dumps(bound) == plain_bound
        assert type(pickle.loads(plain_bound)) is BoundMethodPatch
        assert pickle.loads(plain_bound)("k") == "k"
        assert copy.copy(Picklable.lookup) is Picklable.lookup
        assert copy.copy(bound) == bound
        assert copy.deepcopy(bound).__self__ is not bound.__self__
        method = weakref.WeakMethod(bound)
        assert method() == bound
        function = weakref.ref(vars(Picklable)["lookup"])
        assert function() is vars(Picklable)["lookup"]
    finally:
        patches.unwrap_all()
    assert pickle.dumps(Picklable.lookup) == plain_function


def test_the_memcached_client_is_patched_with_it(memcached):
    assert type(vars(Client)["get"]) is MethodPatch
    with ioprofiler.profile() as trace:
        Client(memcached.address).get("k")
    assert [e.line().split(" ms ")[1] for e in trace.events if e.is_call][-1] == (
        "Cache MISS, keys: k"
    )


def test_help_shows_the_methods_docstring():
    import pydoc

    cls = patched_class("compiled", Recorder())
    assert pydoc.getdoc(cls.lookup) == pydoc.getdoc(cls().lookup) == "Look a key up."
    assert "Look a key up." in pydoc.render_doc(cls, renderer=pydoc.plaintext)


def test_a_weak_method_outlives_install_and_uninstall():
    """Django's signals hold receivers as WeakMethods, keyed by (self, __func__)."""
    from django.dispatch import Signal

    class Handler:
        def on_signal(self, sender, **kwargs):
            return "handled"

    handler, signal, recorder = Handler(), Signal(), Recorder()
    plain = Handler.__dict__["on_signal"]
    patches = Patches()
    patches.wrap(Handler, "on_signal", recorder, always=True)
    signal.connect(handler.on_signal)
    method = weakref.WeakMethod(handler.on_signal)
    assert [r for _, r in signal.send(None)] == ["handled"] and len(recorder.seen) == 1
    assert type(method()) is BoundMethodPatch and method()(None) == "handled"
    assert len(recorder.seen) == 2  # rebuilt through the patch while it is installed
    patches.unwrap_all()
    gc.collect()
    assert [r for _, r in signal.send(None)] == ["handled"]
    assert type(method()) is types.MethodType and method().__func__ is plain
    assert len(recorder.seen) == 2
    assert signal.disconnect(handler.on_signal)  # the same receiver, installed or not


def test_binding_a_bound_method_again_keeps_the_patch():
    recorder = Recorder()
    cls = patched_class("compiled", recorder, var=None)
    first, second = cls(), cls()
    rebound = first.lookup.__get__(second)
    assert type(rebound) is BoundMethodPatch and rebound.__self__ is second
    assert rebound("k")[0] == "k" and recorder.seen[-1][1] is second


def test_no_reference_is_leaked_on_any_path():
    recorder = Recorder()
    cls = patched_class("compiled", recorder)
    shop, key = cls(), object()

    def calls():
        shop.lookup(key)
        shop.lookup(key, 1, 2, 3, 4, 5, 6, 7, 8, 9, flag=key)
        (lambda f: f(key, *range(10), flag=key))(shop.lookup)
        cls.lookup(shop, key)
        try:
            shop.lookup("boom")
        except LookupError:
            pass

    for on in (False, True):
        token = switch.set((1,) if on else ())
        try:
            calls()
            recorder.seen.clear()
            before = (sys.getrefcount(shop), sys.getrefcount(key), sys.getrefcount(cls.lookup))
            for _ in range(200):
                calls()
            recorder.seen.clear()
            after = (sys.getrefcount(shop), sys.getrefcount(key), sys.getrefcount(cls.lookup))
        finally:
            switch.reset(token)
        assert after == before, on


def test_a_cycle_through_the_wrapper_is_collected():
    class Holder:
        def method(self):
            return 1

    def wrapper(wrapped, instance, args, kwargs):
        return wrapped(*args, **kwargs)

    wrapper.patch = MethodPatch(Holder.__dict__["method"], wrapper, switch)  # a cycle
    Holder.method = wrapper.patch
    gone = weakref.ref(wrapper.patch)
    del Holder, wrapper
    gc.collect()
    assert gone() is None


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(TypeError, match="wraps a plain function, not <built-in function len>"):
        MethodPatch(len, Recorder())
    with pytest.raises(TypeError, match="the wrapper must be callable, not 3"):
        MethodPatch(Shop.lookup, 3)
    with pytest.raises(TypeError, match="var must be a contextvars.ContextVar or None"):
        MethodPatch(Shop.lookup, Recorder(), switch.get)
    with pytest.raises(TypeError, match="binds a function, not <built-in function len>"):
        BoundMethodPatch(len, Shop())
    with pytest.raises(TypeError, match="instance must not be None"):
        BoundMethodPatch(MethodPatch(Shop.lookup, Recorder()), None)


def test_patches_choose_the_compiled_type_only_where_it_is_exact():
    class Owner:
        def method(self):
            return "method"

        @classmethod
        def factory(cls):
            return "factory"

    module = types.ModuleType("fake_driver")
    module.connect = lambda: "connected"
    other: ContextVar[bool] = ContextVar("other", default=False)
    patches = Patches()
    try:
        patches.wrap(Owner, "method", Recorder())
        patches.wrap(Owner, "factory", Recorder())
        patches.wrap(module, "connect", Recorder())
        assert type(vars(Owner)["method"]) is MethodPatch
        assert isinstance(vars(Owner)["factory"], IOProfilerWrapper)  # a classmethod
        assert isinstance(vars(module)["connect"], IOProfilerWrapper)  # a module's function
        assert all(is_ours(v) for v in (vars(Owner)["method"], vars(Owner)["factory"]))
        assert not patches.wrap(Owner, "method", Recorder())  # already ours
        patches.unwrap_all()
        patches.wrap(Owner, "method", Recorder(), enabled=other.get)
        assert vars(Owner)["method"]._ioprofiler_var is other
        patches.unwrap_all()
        patches.wrap(Owner, "method", Recorder(), enabled=lambda: True)  # not a ContextVar
        assert isinstance(vars(Owner)["method"], IOProfilerWrapper)
    finally:
        patches.unwrap_all()
    assert vars(Owner)["method"].__name__ == "method" and not is_ours(vars(Owner)["method"])
    assert module.connect() == "connected"


def test_switching_compiled_patches_off_wraps_with_wrapt_and_still_knows_its_own(monkeypatch):
    class Owner:
        def method(self):
            return "method"

        def other(self):
            return "other"

    patches = Patches()
    try:
        patches.wrap(Owner, "method", Recorder())
        monkeypatch.setattr(patching, "compiled_patches", False)  # as the benchmarks' ablation
        patches.wrap(Owner, "other", Recorder())
        assert isinstance(vars(Owner)["other"], IOProfilerWrapper)
        assert is_ours(vars(Owner)["method"]) and not patches.wrap(Owner, "method", Recorder())
    finally:
        patches.unwrap_all()
    assert Owner().method() == "method" and not is_ours(vars(Owner)["method"])


def test_pure_python_mode_uses_wrapt_and_the_python_wrappers(tmp_path):
    script = (
        "import ioprofiler, ioprofiler.patching as p, ioprofiler.recorders as r\n"
        "from pymemcache.client.base import Client\n"
        "ioprofiler.install(only=['pymemcache'])\n"
        "get = vars(Client)['get']\n"
        "print(p.compiled_patches, type(get).__name__, r.compiled_recorders,\n"
        "      type(get._self_wrapper).__name__)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "IOPROFILER_PURE_PYTHON": "1"},
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["False", "IOProfilerWrapper", "False", "function"]
