/* ioprofiler._recorders: the two busiest wrappers, compiled.
 *
 * A recorded memcached get or SQLAlchemy statement spent most of what recording cost it in
 * the Python wrapper itself: entering a Python frame, some sixty bytecodes of argument
 * handling and attribute writes, and calling the library back through a bound method. A
 * Recorder does the same work in C, for two wrappers:
 *
 *   cache_get(...)          pymemcache's Client.get (integrations/pymemcache.py, _single_read)
 *   statement_execute(...)  SQLAlchemy's do_execute (integrations/sqlalchemy.py,
 *                           _execution_wrapper)
 *
 * Each keeps its Python wrapper as the reference: every call of a shape other than the usual
 * one (keyword arguments, a missing or extra argument, a dialect not named yet) is handed to
 * it, so an unusual call is recorded exactly as before, and tests/test_recorders.py holds the
 * two to the same events field by field. The rest of recording (begin, failed, done,
 * profiler_failed, snapshot, the targets' names) is ioprofiler's own Python or compiled code,
 * called as the Python wrapper calls it.
 *
 * A Recorder is called in one of two ways:
 * - by ioprofiler._patch.MethodPatch, through the capsule ``_ioprofiler_fastcall``: with the
 *   trace tuple MethodPatch has read already and the call's own arguments (the instance
 *   first), so nothing is built before the recording starts;
 * - as any wrapt wrapper is, ``recorder(wrapped, instance, args, kwargs)``, where the patch
 *   is wrapt's (a method another tool wrapped first, or without MethodPatch).
 *
 * Only the public C API is used (with _PyType_Lookup, and the perf counter CPython's
 * time.perf_counter_ns reads; both exported on every version):
 * it builds on every CPython ioprofiler supports. On a free-threaded build it refuses to import
 * (it reads dictionary entries the GIL guards), and the Python wrappers record: refused before
 * a module exists, the import leaves the GIL off (a module made without declaring Py_mod_gil
 * would turn it back on for the whole process).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h> /* T_OBJECT_EX, READONLY */

#ifndef Py_GIL_DISABLED

/* ---- a call as the recorder received it -------------------------------------------------- */

/* The call being recorded, in either calling convention. */
typedef struct {
    PyObject *function;      /* MethodPatch: the class's own function, called instance first */
    PyObject *const *full;   /* MethodPatch: the arguments as received, the instance first */
    size_t full_nargsf;
    PyObject *kwnames;       /* MethodPatch: the keyword arguments' names, or NULL */
    PyObject *bound;         /* wrapt: ``wrapped``, called as it is */
    PyObject *args_tuple;    /* wrapt: args and kwargs as received */
    PyObject *kwargs_dict;
    PyObject *instance;
    PyObject *const *args;   /* the positional arguments after the instance */
    Py_ssize_t nargs;
    int keywords;            /* any keyword argument? */
    int called;              /* has the library been called? (then never again) */
} Call;

/* The library's method, with the arguments it was called with. */
static PyObject *
call_as_given(Call *call)
{
    call->called = 1;
    if (call->function != NULL) {
        return PyObject_Vectorcall(call->function, call->full, call->full_nargsf, call->kwnames);
    }
    return PyObject_Call(call->bound, call->args_tuple, call->kwargs_dict);
}

/* The library's method with these positional arguments (after the instance). */
static PyObject *
call_with(Call *call, PyObject *const *args, Py_ssize_t nargs)
{
    call->called = 1;
    if (call->function != NULL) {
        PyObject *stack[4];
        if (nargs > 3) {
            PyErr_SetString(PyExc_SystemError, "call_with(): too many arguments");
            return NULL;
        }
        stack[0] = call->instance;
        for (Py_ssize_t i = 0; i < nargs; i++) {
            stack[i + 1] = args[i];
        }
        return PyObject_Vectorcall(call->function, stack, (size_t)nargs + 1, NULL);
    }
    return PyObject_Vectorcall(call->bound, args, (size_t)nargs, NULL);
}

/* ---- the recorder ------------------------------------------------------------------------ */

typedef struct Recorder Recorder;
typedef PyObject *(*record_fn)(Recorder *, Call *, PyObject *traces);

/* What both recorders call, in the order of cache_get's and statement_execute's arguments. */
enum {
    R_REFERENCE, /* the Python wrapper this recorder stands in for */
    R_ACTIVE,    /* recording.active, the ContextVar of the open traces */
    R_BEGIN,
    R_FAILED,
    R_DONE,
    R_PROFILER_FAILED,
    R_KIND,
    R_OP,
    R_EVENT_CLASS, /* the class begin makes for kind and op: its fields are written directly */
    COMMON_FIELDS
};
/* cache_get's own */
enum { C_TARGETS = COMMON_FIELDS, C_TARGET, C_NOT_FOUND, C_IGNORED_ERROR, CACHE_FIELDS };
/* statement_execute's own */
enum {
    S_INSIDE = COMMON_FIELDS,
    S_NAMES,
    S_SNAPSHOT,
    S_KEPT,
    S_BELOW,
    S_REACHES_BELOW,
    S_OVERRIDE,
    STATEMENT_FIELDS
};
/* round_trip's own (inside and names where statement_execute has them) */
enum {
    T_INSIDE = COMMON_FIELDS,
    T_NAMES,
    T_POOL_RESET,
    T_PLAIN,         /* op -> DefaultDialect's own method for it, before it was wrapped */
    T_BELOW,         /* recording.below and cursor_reaches_below, as statement_execute's */
    T_REACHES_BELOW,
    ROUND_TRIP_FIELDS
};
/* engine_checkout's own; pool_checkout has none */
enum { G_NAMES = COMMON_FIELDS, ENGINE_FIELDS };
#define POOL_FIELDS COMMON_FIELDS
#define MAX_OBJECTS STATEMENT_FIELDS

/* The event fields a recorder writes, by slot offset when the event is of event_class. */
enum { E_KEYS, E_HIT, E_MISSED_KEYS, E_STATEMENT, E_PARAMS, E_ROWS, E_PARAMSTYLE, E_DIALECT,
       E_END, E_OVERFLOW, E_ERROR, E_DETAIL, EVENT_FIELDS };
static const char *const event_field_names[EVENT_FIELDS] = {
    "keys", "hit", "missed_keys", "statement", "params", "rows", "paramstyle", "dialect",
    "end_ns", "_overflow", "error", "detail",
};
static PyObject *event_field_strs[EVENT_FIELDS];

struct Recorder {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    record_fn record;
    Py_ssize_t count;
    PyObject *objects[MAX_OBJECTS];
    Py_ssize_t offsets[EVENT_FIELDS]; /* 0: not a slot of event_class, set by name */
};

static PyTypeObject Recorder_Type;

static PyObject *str_proxy, *str_dbapi_connection, *str_reset_code, *str_called_from;
static PyObject *str_trace, *str_error, *str_dunder_name;
static PyObject *depth_zero, *frames_four;
static PyObject *str_server, *str_ignore_exc, *str_sock, *str_class, *str_paramstyle, *str_name,
    *depth_one, *str_getitem, *str_dialect, *str_max_overflow, *str_overflow;
static PyObject *object_class_descriptor; /* object.__dict__["__class__"] */
static PyObject *dict_getitem;            /* dict.__dict__["__getitem__"] */

#define OBJ(recorder, index) ((recorder)->objects[index])

static PyObject *
perf_counter_ns(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyTime_t now;
    if (PyTime_PerfCounter(&now) < 0) {
        return NULL;
    }
    return PyLong_FromLongLong(now);
#else
    return _PyTime_AsNanosecondsObject(_PyTime_GetPerfCounter());
#endif
}

/* event.<field> = value (a new reference, stolen); -1 with an exception set. */
static int
set_field(Recorder *self, PyObject *event, int field, PyObject *value)
{
    if (value == NULL) {
        return -1;
    }
    Py_ssize_t offset = self->offsets[field];
    if (offset > 0 && Py_IS_TYPE(event, (PyTypeObject *)OBJ(self, R_EVENT_CLASS))) {
        PyObject **slot = (PyObject **)((char *)event + offset);
        Py_XSETREF(*slot, value);
        return 0;
    }
    int status = PyObject_SetAttr(event, event_field_strs[field], value);
    Py_DECREF(value);
    return status;
}

/* The Python wrapper, called as wrapt would call it. */
static PyObject *
delegate(Recorder *self, Call *call)
{
    PyObject *reference = OBJ(self, R_REFERENCE);
    if (call->function == NULL) {
        PyObject *stack[4] = {call->bound, call->instance, call->args_tuple, call->kwargs_dict};
        return PyObject_Vectorcall(reference, stack, 4, NULL);
    }
    PyObject *bound = NULL, *positional = NULL, *kwargs = NULL, *result = NULL;
    bound = PyMethod_New(call->function, call->instance);
    positional = bound == NULL ? NULL : PyTuple_New(call->nargs);
    kwargs = positional == NULL ? NULL : PyDict_New();
    if (kwargs == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < call->nargs; i++) {
        PyTuple_SET_ITEM(positional, i, Py_NewRef(call->args[i]));
    }
    PyObject *names = call->kwnames;
    for (Py_ssize_t i = 0; names != NULL && i < PyTuple_GET_SIZE(names); i++) {
        if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(names, i), call->args[call->nargs + i]) < 0) {
            goto done;
        }
    }
    PyObject *stack[4] = {bound, call->instance, positional, kwargs};
    result = PyObject_Vectorcall(reference, stack, 4, NULL);
done:
    Py_XDECREF(bound);
    Py_XDECREF(positional);
    Py_XDECREF(kwargs);
    return result;
}

/* The exception set now, normalised (its traceback on it), and cleared; NULL if none. */
static PyObject *
take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (value != NULL && traceback != NULL) {
        PyException_SetTraceback(value, traceback);
    }
    Py_XDECREF(type);
    Py_XDECREF(traceback);
    return value;
#endif
}

/* Set exc (stolen) as the exception being raised. */
static void
restore_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    if (exc != NULL) {
        PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
    }
#endif
}

/* The Python wrappers' ``except Exception``: for an Exception set now, profiler_failed(traces,
 * it) counts the profiler's own failure and clears it (0); anything else (KeyboardInterrupt,
 * SystemExit) is left set to be raised (-1). */
static int
profiler_failed(Recorder *self, PyObject *traces)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception)) {
        return -1;
    }
    PyObject *exc = take_exception();
    PyObject *stack[2] = {traces, exc != NULL ? exc : Py_None};
    PyObject *result = PyObject_Vectorcall(OBJ(self, R_PROFILER_FAILED), stack, 2, NULL);
    Py_XDECREF(result);
    PyErr_Clear(); /* it never raises; if it did, the application must not see it */
    Py_XDECREF(exc);
    return 0;
}

/* failed(event, the exception set now), the exception left set to be raised on (or, as from
 * the Python wrapper's except clause, what failed() itself raised if it is no Exception). */
static void
call_failed(Recorder *self, PyObject *event)
{
    PyObject *exc = take_exception();
    PyObject *stack[2] = {event, exc != NULL ? exc : Py_None};
    PyObject *result = PyObject_Vectorcall(OBJ(self, R_FAILED), stack, 2, NULL);
    Py_XDECREF(result);
    if (result == NULL && !PyErr_ExceptionMatches(PyExc_Exception)) {
        Py_XDECREF(exc);
        return;
    }
    PyErr_Clear();
    restore_exception(exc);
}

/* done(event), when a full trace could not keep it (its end and outcome set): 0, or -1 with an
 * exception set. */
static int
settle(Recorder *self, PyObject *event)
{
    PyObject *overflow;
    Py_ssize_t offset = self->offsets[E_OVERFLOW];
    if (offset > 0 && Py_IS_TYPE(event, (PyTypeObject *)OBJ(self, R_EVENT_CLASS))) {
        overflow = Py_XNewRef(*(PyObject **)((char *)event + offset));
        if (overflow == NULL) {
            PyErr_SetString(PyExc_AttributeError, "_overflow"); /* as reading it would */
        }
    }
    else {
        overflow = PyObject_GetAttr(event, event_field_strs[E_OVERFLOW]);
    }
    if (overflow == NULL) {
        return -1;
    }
    int settled = 0;
    if (overflow != Py_None) {
        PyObject *result = PyObject_Vectorcall(OBJ(self, R_DONE), &event, 1, NULL);
        settled = result == NULL ? -1 : 0;
        Py_XDECREF(result);
    }
    Py_DECREF(overflow);
    return settled;
}

/* begin(traces, kind, op, target, 1): the callsite one frame up from here, the caller's. */
static PyObject *
begin_event(Recorder *self, PyObject *traces, PyObject *target)
{
    PyObject *stack[5] = {traces, OBJ(self, R_KIND), OBJ(self, R_OP), target, depth_one};
    return PyObject_Vectorcall(OBJ(self, R_BEGIN), stack, 5, NULL);
}

/* ---- pymemcache's Client.get(key, default=None) ------------------------------------------ */

/* getattr(obj, name, None) into *value: 0 (*value NULL when absent), -1 with an exception. */
static int
optional_attr(PyObject *obj, PyObject *name, PyObject **value)
{
    *value = PyObject_GetAttr(obj, name);
    if (*value != NULL) {
        return 0;
    }
    if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
        return -1;
    }
    PyErr_Clear();
    return 0;
}

/* With ignore_exc=True a failed read looks like a miss, but it closed the socket
 * (pymemcache.py's _note_hidden_error). 0, or -1 with an exception set. */
static int
note_hidden_error(Recorder *self, PyObject *event, PyObject *client)
{
    PyObject *ignore_exc;
    if (optional_attr(client, str_ignore_exc, &ignore_exc) < 0) {
        return -1;
    }
    int ignoring = ignore_exc == NULL ? 0 : PyObject_IsTrue(ignore_exc);
    Py_XDECREF(ignore_exc);
    if (ignoring <= 0) {
        return ignoring;
    }
    PyObject *sock;
    if (optional_attr(client, str_sock, &sock) < 0) {
        return -1;
    }
    int closed = sock == Py_None; /* absent reads as True: not closed */
    Py_XDECREF(sock);
    if (!closed) {
        return 0;
    }
    return set_field(self, event, E_ERROR, Py_NewRef(OBJ(self, C_IGNORED_ERROR)));
}

/* The target of the client's server: targets.get(server) or target(server). */
static PyObject *
server_target(Recorder *self, PyObject *client)
{
    PyObject *server = PyObject_GetAttr(client, str_server);
    if (server == NULL) {
        return NULL;
    }
    PyObject *target = Py_XNewRef(PyDict_GetItemWithError(OBJ(self, C_TARGETS), server));
    int known = target == NULL ? (PyErr_Occurred() ? -1 : 0) : PyObject_IsTrue(target);
    if (known == 0) {
        Py_XSETREF(target, PyObject_CallOneArg(OBJ(self, C_TARGET), server));
    }
    else if (known < 0) {
        Py_CLEAR(target);
    }
    Py_DECREF(server);
    return target;
}

static PyObject *
record_get(Recorder *self, Call *call, PyObject *traces)
{
    if (call->nargs != 1 || call->keywords) {
        return NULL; /* the reference wrapper's */
    }
    PyObject *key = call->args[0];
    PyObject *event = NULL, *keys = NULL;
    PyObject *target = server_target(self, call->instance);
    if (target != NULL) {
        event = begin_event(self, traces, target);
        Py_DECREF(target);
        keys = event == NULL ? NULL : PyTuple_Pack(1, key);
        if (keys == NULL || set_field(self, event, E_KEYS, Py_NewRef(keys)) < 0) {
            Py_CLEAR(event);
        }
    }
    if (event == NULL) {
        Py_XDECREF(keys);
        return profiler_failed(self, traces) < 0 ? NULL : call_as_given(call);
    }
    PyObject *found_or_not = OBJ(self, C_NOT_FOUND);
    PyObject *arguments[2] = {key, found_or_not};
    PyObject *result = call_with(call, arguments, 2);
    if (result == NULL) {
        call_failed(self, event);
        Py_DECREF(event);
        Py_DECREF(keys);
        return NULL;
    }
    int failure = set_field(self, event, E_END, perf_counter_ns()) < 0;
    int found = result != found_or_not;
    failure = failure || set_field(self, event, E_HIT, PyBool_FromLong(found)) < 0;
    if (!found && !failure) {
        Py_SETREF(result, Py_NewRef(Py_None)); /* get's default */
        failure = set_field(self, event, E_MISSED_KEYS, Py_NewRef(keys)) < 0 ||
                  note_hidden_error(self, event, call->instance) < 0;
    }
    if (failure || settle(self, event) < 0) {
        Py_CLEAR(result); /* as the Python wrapper raises here: these are its own errors */
    }
    Py_DECREF(event);
    Py_DECREF(keys);
    return result;
}

/* ---- SQLAlchemy's dialect.do_execute(cursor, statement, parameters, context=None) -------- */

/* Is value's exact type one kept as it is (in kept)? 1, 0, or -1 with an exception set. A
 * type whose own class is not ``type`` is left to the Python function: looking it up here
 * must not run Python code (a metaclass's __hash__ or __eq__). */
static inline int
is_kept_type(PyObject *kept, PyObject *value)
{
    PyTypeObject *type = Py_TYPE(value);
    if (!Py_IS_TYPE(type, &PyType_Type)) {
        return 0;
    }
    return PySet_Contains(kept, (PyObject *)type);
}

/* snapshot(parameters) (ioprofiler.values): the same tuple, or a dict's copy, when every value
 * is of a type kept as it is; anything else from the Python function. */
static PyObject *
snapshot(Recorder *self, PyObject *parameters)
{
    PyObject *kept = OBJ(self, S_KEPT);
    if (PyTuple_CheckExact(parameters)) {
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(parameters); i++) {
            int is_kept = is_kept_type(kept, PyTuple_GET_ITEM(parameters, i));
            if (is_kept <= 0) {
                return is_kept < 0 ? NULL : PyObject_CallOneArg(OBJ(self, S_SNAPSHOT), parameters);
            }
        }
        return Py_NewRef(parameters);
    }
    if (PyDict_CheckExact(parameters)) {
        Py_ssize_t position = 0;
        PyObject *name, *value;
        while (PyDict_Next(parameters, &position, &name, &value)) {
            int is_kept = is_kept_type(kept, value);
            if (is_kept <= 0) {
                return is_kept < 0 ? NULL : PyObject_CallOneArg(OBJ(self, S_SNAPSHOT), parameters);
            }
        }
        return PyDict_Copy(parameters);
    }
    return PyObject_CallOneArg(OBJ(self, S_SNAPSHOT), parameters);
}

/* obj.__class__ (a new reference): its type, unless something may answer otherwise (a proxy's
 * own getattr, a class attribute of that name), which is then asked. */
static PyObject *
class_of(PyObject *obj)
{
    PyTypeObject *type = Py_TYPE(obj);
    if (type->tp_getattro == PyObject_GenericGetAttr &&
        _PyType_Lookup(type, str_class) == object_class_descriptor) {
        return Py_NewRef((PyObject *)type);
    }
    return PyObject_GetAttr(obj, str_class);
}

/* by_class[cursor_class], a new reference: read from the dictionary itself when a class seen
 * before is looked up in a dict whose __getitem__ is dict's own, else as Python subscripts it
 * (a dict subclass's __missing__ decides a class not seen yet). */
static PyObject *
reaches_below(PyObject *by_class, PyObject *cursor_class)
{
    if (PyDict_Check(by_class) && _PyType_Lookup(Py_TYPE(by_class), str_getitem) == dict_getitem) {
        PyObject *known = PyDict_GetItemWithError(by_class, cursor_class);
        if (known != NULL || PyErr_Occurred()) {
            return Py_XNewRef(known);
        }
    }
    return PyObject_GetItem(by_class, cursor_class);
}

/* Whether a driver integration installed below (``below`` not empty) records what is sent
 * through ``cursor`` (a DB-API cursor or connection): ``reaches[cursor.__class__]``. 1, 0, -1
 * with an exception set. */
static int
driver_below(PyObject *below, PyObject *by_class, PyObject *cursor)
{
    if (PyDict_CheckExact(below) && PyDict_GET_SIZE(below) == 0) {
        return 0;
    }
    int any = PyObject_IsTrue(below);
    if (any <= 0) {
        return any;
    }
    PyObject *cursor_class = class_of(cursor);
    if (cursor_class == NULL) {
        return -1;
    }
    PyObject *reaches = reaches_below(by_class, cursor_class);
    Py_DECREF(cursor_class);
    if (reaches == NULL) {
        return -1;
    }
    int mark = PyObject_IsTrue(reaches);
    Py_DECREF(reaches);
    return mark;
}

/* Whether the statement needs the ``inside`` mark (recording.py: an override's super() call,
 * or a cursor a driver integration installed below records): 1, 0, -1 with an exception set. */
static int
needs_mark(Recorder *self, PyObject *cursor)
{
    if (OBJ(self, S_OVERRIDE) == Py_True) {
        return 1;
    }
    return driver_below(OBJ(self, S_BELOW), OBJ(self, S_REACHES_BELOW), cursor);
}

/* The shard name remembered for this dialect (_names[id(dialect)]): a new reference, or NULL
 * with no exception set when it is not known yet. */
static PyObject *
shard_name(Recorder *self, PyObject *dialect)
{
    PyObject *key = PyLong_FromVoidPtr(dialect);
    if (key == NULL) {
        return NULL;
    }
    PyObject *name = PyDict_GetItemWithError(OBJ(self, S_NAMES), key); /* T_NAMES the same */
    Py_DECREF(key);
    return Py_XNewRef(name);
}

/* The statement's event with its fields, and whether it needs the mark; NULL with an
 * exception set (the profiler's own failure). */
static PyObject *
begin_statement(Recorder *self, Call *call, PyObject *traces, PyObject *name, int *mark)
{
    PyObject *parameters = call->args[2];
    PyObject *params = parameters == Py_None ? Py_NewRef(Py_None) : snapshot(self, parameters);
    if (params == NULL) {
        return NULL;
    }
    *mark = needs_mark(self, call->args[0]);
    PyObject *event = *mark < 0 ? NULL : begin_event(self, traces, name);
    if (event == NULL) {
        Py_DECREF(params);
        return NULL;
    }
    if (set_field(self, event, E_PARAMS, params) < 0 ||
        set_field(self, event, E_STATEMENT, Py_NewRef(call->args[1])) < 0 ||
        set_field(self, event, E_ROWS, Py_NewRef(Py_None)) < 0 ||
        set_field(self, event, E_PARAMSTYLE, PyObject_GetAttr(call->instance, str_paramstyle)) < 0 ||
        set_field(self, event, E_DIALECT, PyObject_GetAttr(call->instance, str_name)) < 0) {
        Py_DECREF(event);
        return NULL;
    }
    return event;
}

/* Whether a call recorded with the ``inside`` mark is running already: 1 (pass this call
 * through), 0, or -1 when that cannot be told (the reference wrapper's then). */
static int
already_inside(PyObject *inside)
{
    PyObject *already;
    if (PyContextVar_Get(inside, NULL, &already) < 0) {
        PyErr_Clear();
        return -1;
    }
    int nested = already == NULL ? 0 : PyObject_IsTrue(already);
    Py_XDECREF(already);
    if (nested < 0) {
        PyErr_Clear();
    }
    return nested;
}

/* Run the call as ``event`` (a reference stolen): marked ``inside`` while it runs (unless
 * NULL: what it sends below is then part of it, not events of its own), failed or ended and
 * settled after. The call's result, or NULL with its exception. */
static PyObject *
run_as_event(Recorder *self, Call *call, PyObject *event, PyObject *inside)
{
    PyObject *token = inside != NULL ? PyContextVar_Set(inside, Py_True) : NULL;
    if (token == NULL) {
        PyErr_Clear(); /* unmarked, or out of memory: the call runs unmarked */
    }
    PyObject *result = call_as_given(call);
    if (result == NULL) {
        call_failed(self, event);
    }
    if (token != NULL) {
        PyObject *exc = result == NULL ? take_exception() : NULL;
        if (PyContextVar_Reset(inside, token) < 0) {
            PyErr_Clear();
        }
        if (exc != NULL) {
            restore_exception(exc);
        }
        Py_DECREF(token);
    }
    if (result != NULL &&
        (set_field(self, event, E_END, perf_counter_ns()) < 0 || settle(self, event) < 0)) {
        Py_CLEAR(result);
    }
    Py_DECREF(event);
    return result;
}

static PyObject *
record_statement(Recorder *self, Call *call, PyObject *traces)
{
    PyObject *inside = OBJ(self, S_INSIDE);
    int nested = already_inside(inside);
    if (nested != 0) {
        return nested > 0 ? call_as_given(call) : NULL; /* < 0: the reference wrapper's */
    }
    if (call->nargs != 4 || call->keywords) {
        return NULL;
    }
    PyObject *name = shard_name(self, call->instance);
    if (name == NULL) {
        PyErr_Clear(); /* the reference wrapper names the shard, and remembers it */
        return NULL;
    }
    int mark = 0;
    PyObject *event = begin_statement(self, call, traces, name, &mark);
    Py_DECREF(name);
    if (event == NULL) {
        return profiler_failed(self, traces) < 0 ? NULL : call_as_given(call);
    }
    return run_as_event(self, call, event, mark ? inside : NULL);
}

/* ---- SQLAlchemy's round trips and checkouts ---------------------------------------------- */

/* Whether a round trip needs the ``inside`` mark (integrations/sqlalchemy.py, _round_trip_mark):
 * not when the method called is DefaultDialect's own (which sends nothing but the DB-API
 * connection's own call) and no driver integration below records that connection's driver.
 * 1, 0, -1 with an exception set. */
static int
round_trip_mark(Recorder *self, Call *call)
{
    PyObject *plain = PyDict_GetItemWithError(OBJ(self, T_PLAIN), OBJ(self, R_OP));
    if (plain == NULL) {
        return PyErr_Occurred() ? -1 : 1;
    }
    PyObject *function = call->function;
    if (function == NULL) { /* wrapt's: the bound method */
        function = PyMethod_Check(call->bound) ? PyMethod_GET_FUNCTION(call->bound) : NULL;
    }
    if (function != plain) {
        return 1; /* a dialect's override: it may call the base's through super() */
    }
    PyObject *below = OBJ(self, T_BELOW);
    if (PyDict_CheckExact(below) && PyDict_GET_SIZE(below) == 0) {
        return 0;
    }
    /* the pool's proxy (plain["proxy"]) passes the call on to the DB-API connection it holds */
    PyObject *connection = call->args[0], *held = NULL;
    PyObject *proxy = PyDict_GetItemWithError(OBJ(self, T_PLAIN), str_proxy);
    if (proxy == NULL && PyErr_Occurred()) {
        return -1;
    }
    if (proxy != NULL && (PyObject *)Py_TYPE(connection) == proxy) {
        if ((held = PyObject_GetAttr(connection, str_dbapi_connection)) == NULL) {
            return -1;
        }
        connection = held;
    }
    int mark = driver_below(below, OBJ(self, T_REACHES_BELOW), connection);
    Py_XDECREF(held);
    return mark;
}

/* ``detail`` of a COMMIT or ROLLBACK: whether the pool's reset on check-in called it, asked of
 * _speedups.called_from directly (plain["called_from"], with the code of _ConnectionFairy._reset
 * as plain["reset_code"]) as the reference's _called_by_pool_reset asks it, counting from the
 * library frame that called the method; else the reference's pool_reset(1). A new reference,
 * or NULL with an exception set. */
static PyObject *
pool_reset_detail(Recorder *self, PyObject *pool_reset)
{
    PyObject *plain = OBJ(self, T_PLAIN);
    PyObject *code = PyDict_GetItemWithError(plain, str_reset_code);
    PyObject *called_from = code == NULL ? NULL : PyDict_GetItemWithError(plain, str_called_from);
    if (called_from != NULL && called_from != Py_None && PyCode_Check(code)) {
        PyObject *stack[3] = {code, depth_zero, frames_four};
        PyObject *found = PyObject_Vectorcall(called_from, stack, 3, NULL);
        if (found == NULL && PyErr_ExceptionMatches(PyExc_Exception)) {
            PyErr_Clear(); /* the reference's ``except Exception``: not the pool's reset */
            found = Py_NewRef(Py_False);
        }
        return found;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    return PyObject_CallOneArg(pool_reset, depth_one);
}

/* do_commit / do_rollback / do_ping(dbapi_connection) on a dialect whose shard ``names`` knows:
 * one COMMIT, ROLLBACK or PING event (integrations/sqlalchemy.py, _round_trip_wrapper), its
 * ``detail`` pool_reset(1) when given (whether the pool's reset on check-in called it), and
 * the inside mark while the dialect runs it (what it sends below is part of it). */
static PyObject *
record_round_trip(Recorder *self, Call *call, PyObject *traces)
{
    PyObject *inside = OBJ(self, T_INSIDE);
    int nested = already_inside(inside);
    if (nested != 0) {
        return nested > 0 ? call_as_given(call) : NULL; /* < 0: the reference wrapper's */
    }
    if (call->nargs != 1 || call->keywords) {
        return NULL;
    }
    PyObject *name = shard_name(self, call->instance);
    if (name == NULL) {
        PyErr_Clear(); /* the reference wrapper names the shard, and remembers it */
        return NULL;
    }
    int mark = round_trip_mark(self, call);
    PyObject *event = mark < 0 ? NULL : begin_event(self, traces, name);
    Py_DECREF(name);
    PyObject *pool_reset = OBJ(self, T_POOL_RESET);
    if (event == NULL ||
        set_field(self, event, E_DIALECT, PyObject_GetAttr(call->instance, str_name)) < 0 ||
        (pool_reset != Py_None &&
         set_field(self, event, E_DETAIL, pool_reset_detail(self, pool_reset)) < 0)) {
        Py_XDECREF(event);
        return profiler_failed(self, traces) < 0 ? NULL : call_as_given(call);
    }
    return run_as_event(self, call, event, mark ? inside : NULL);
}

/* Engine.raw_connection(): called through at once when the engine's dialect is named in
 * ``names``; else the reference names it first (_engine_checkout). */
static PyObject *
record_engine_checkout(Recorder *self, Call *call, PyObject *traces)
{
    (void)traces;
    if (call->nargs != 0 || call->keywords) {
        return NULL;
    }
    PyObject *dialect = PyObject_GetAttr(call->instance, str_dialect);
    if (dialect == NULL) {
        PyErr_Clear(); /* the reference reads it again, and raises as it would */
        return NULL;
    }
    PyObject *key = PyLong_FromVoidPtr(dialect);
    Py_DECREF(dialect);
    if (key == NULL) {
        PyErr_Clear();
        return NULL;
    }
    int named = PyDict_Contains(OBJ(self, G_NAMES), key);
    Py_DECREF(key);
    if (named != 1) {
        PyErr_Clear();
        return NULL;
    }
    return call_as_given(call);
}

/* QueuePool._do_get(): called through at once when the checkout cannot have to wait (no
 * overflow limit, or overflow not used up: _must_wait's first two tests); else the reference
 * looks at the pool and records the wait. */
static PyObject *
record_pool_checkout(Recorder *self, Call *call, PyObject *traces)
{
    (void)self;
    (void)traces;
    if (call->nargs != 0 || call->keywords) {
        return NULL;
    }
    PyObject *limit = PyObject_GetAttr(call->instance, str_max_overflow);
    if (limit == NULL) {
        PyErr_Clear();
        return NULL;
    }
    int unlimited = 0, below_limit = 0;
    if (PyLong_CheckExact(limit)) {
        int overflowed;
        long value = PyLong_AsLongAndOverflow(limit, &overflowed);
        unlimited = overflowed == 0 && value == -1;
    }
    if (!unlimited && PyLong_CheckExact(limit)) {
        PyObject *used = PyObject_GetAttr(call->instance, str_overflow);
        if (used != NULL && PyLong_CheckExact(used)) {
            below_limit = PyObject_RichCompareBool(used, limit, Py_LT) == 1;
        }
        Py_XDECREF(used);
    }
    Py_DECREF(limit);
    PyErr_Clear();
    if (unlimited || below_limit) {
        return call_as_given(call);
    }
    return NULL;
}

/* ---- calling a recorder ------------------------------------------------------------------ */

/* The record function's answer, or the reference wrapper's when the call is not of the shape
 * it records (record returned NULL with no exception set, before calling the library: it is
 * never called twice). A recorder the garbage collector has cleared (a cycle broken at
 * shutdown) only passes the call on. */
static PyObject *
run(Recorder *self, Call *call, PyObject *traces)
{
    if (OBJ(self, R_REFERENCE) == NULL) {
        return call_as_given(call);
    }
    PyObject *result = self->record(self, call, traces);
    if (result == NULL && !PyErr_Occurred()) {
        if (!call->called) {
            return delegate(self, call);
        }
        PyErr_SetString(PyExc_SystemError, "ioprofiler recorder failed without an error");
    }
    return result;
}

/* MethodPatch's call, while a trace is open: ``traces`` the context variable's value, args[0]
 * the instance. */
static PyObject *
recorder_fastcall(PyObject *op, PyObject *function, PyObject *traces, PyObject *const *args,
                  size_t nargsf, PyObject *kwnames)
{
    Recorder *self = (Recorder *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Call call = {
        .function = function,
        .full = args,
        .full_nargsf = nargsf,
        .instance = args[0],
        .args = args + 1,
        .nargs = nargs - 1,
        .kwnames = kwnames,
        .keywords = kwnames != NULL && PyTuple_GET_SIZE(kwnames) > 0,
    };
    return run(self, &call, traces);
}

/* recorder(wrapped, instance, args, kwargs), as wrapt calls its wrappers. */
static PyObject *
recorder_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Recorder *self = (Recorder *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 4 || kwnames != NULL || !PyTuple_Check(args[2]) || !PyDict_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "a recorder is called as wrapper(wrapped, instance, args, kwargs)");
        return NULL;
    }
    PyObject *traces;
    if (OBJ(self, R_ACTIVE) == NULL) { /* cleared by the garbage collector */
        return PyObject_Call(args[0], args[2], args[3]);
    }
    if (PyContextVar_Get(OBJ(self, R_ACTIVE), NULL, &traces) < 0) {
        return NULL;
    }
    int open = traces == NULL ? 0 : PyObject_IsTrue(traces);
    PyObject *result;
    if (open <= 0) {
        result = open < 0 ? NULL : PyObject_Call(args[0], args[2], args[3]);
    }
    else {
        Call call = {
            .bound = args[0],
            .instance = args[1],
            .args_tuple = args[2],
            .kwargs_dict = args[3],
            .args = &PyTuple_GET_ITEM(args[2], 0),
            .nargs = PyTuple_GET_SIZE(args[2]),
            .keywords = PyDict_GET_SIZE(args[3]) > 0,
        };
        result = run(self, &call, traces);
    }
    Py_XDECREF(traces);
    return result;
}

static int
recorder_traverse(Recorder *self, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Py_VISIT(self->objects[i]);
    }
    return 0;
}

static int
recorder_clear(Recorder *self)
{
    for (Py_ssize_t i = 0; i < self->count; i++) {
        Py_CLEAR(self->objects[i]);
    }
    return 0;
}

static void
recorder_dealloc(Recorder *self)
{
    PyObject_GC_UnTrack(self);
    recorder_clear(self);
    PyObject_GC_Del(self);
}

static PyObject *
recorder_get_reference(PyObject *op, void *Py_UNUSED(closure))
{
    PyObject *reference = OBJ((Recorder *)op, R_REFERENCE);
    if (reference == NULL) {
        PyErr_SetString(PyExc_AttributeError, "reference");
        return NULL;
    }
    return Py_NewRef(reference);
}

static PyObject *
recorder_repr(PyObject *op)
{
    Recorder *self = (Recorder *)op;
    const char *what = self->record == record_get              ? "cache_get"
                       : self->record == record_statement       ? "statement_execute"
                       : self->record == record_round_trip      ? "round_trip"
                       : self->record == record_engine_checkout ? "engine_checkout"
                                                                : "pool_checkout";
    return PyUnicode_FromFormat("<ioprofiler recorder %s of %R>", what, OBJ(self, R_REFERENCE));
}

static PyObject *
recorder_get_active(PyObject *op, void *Py_UNUSED(closure))
{
    PyObject *active = OBJ((Recorder *)op, R_ACTIVE);
    return Py_NewRef(active != NULL ? active : Py_None);
}

static PyGetSetDef recorder_getset[] = {
    {"reference", recorder_get_reference, NULL,
     "the Python wrapper this recorder stands in for, and hands unusual calls to", NULL},
    {"active", recorder_get_active, NULL,
     "the ContextVar of the open traces (MethodPatch calls the recorder directly when it is\n"
     "switched by this same variable)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject Recorder_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ioprofiler._recorders.Recorder",
    .tp_basicsize = sizeof(Recorder),
    .tp_dealloc = (destructor)recorder_dealloc,
    .tp_call = PyVectorcall_Call,
    .tp_repr = recorder_repr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_traverse = (traverseproc)recorder_traverse,
    .tp_clear = (inquiry)recorder_clear,
    .tp_getset = recorder_getset,
    .tp_vectorcall_offset = offsetof(Recorder, vectorcall),
};

/* ---- making one -------------------------------------------------------------------------- */

/* The offsets of the event class's writable object slots among event_field_names (0: set by
 * name). */
static int
find_offsets(Recorder *self)
{
    PyObject *cls = OBJ(self, R_EVENT_CLASS);
    if (!PyType_Check(cls)) {
        PyErr_Format(PyExc_TypeError, "event_class must be a class, not %R", cls);
        return -1;
    }
    for (int f = 0; f < EVENT_FIELDS; f++) {
        self->offsets[f] = 0;
        PyObject *descr = PyObject_GetAttr(cls, event_field_strs[f]);
        if (descr == NULL) {
            PyErr_Clear();
            continue;
        }
        if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
            PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
            if (member->type == T_OBJECT_EX && !(member->flags & READONLY)) {
                self->offsets[f] = member->offset;
            }
        }
        Py_DECREF(descr);
    }
    return 0;
}

static PyObject *
make_recorder(record_fn record, const char *what, const char *const *names, Py_ssize_t count,
              PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 0 || kwnames == NULL || PyTuple_GET_SIZE(kwnames) != count) {
        PyErr_Format(PyExc_TypeError, "%s() takes its %zd arguments by name", what, count);
        return NULL;
    }
    Recorder *self = PyObject_GC_New(Recorder, &Recorder_Type);
    if (self == NULL) {
        return NULL;
    }
    self->record = record;
    self->count = count;
    for (Py_ssize_t i = 0; i < MAX_OBJECTS; i++) {
        self->objects[i] = NULL;
    }
    self->vectorcall = recorder_vectorcall;
    for (Py_ssize_t k = 0; k < count; k++) {
        PyObject *given = PyTuple_GET_ITEM(kwnames, k);
        Py_ssize_t index = -1;
        for (Py_ssize_t i = 0; i < count; i++) {
            if (PyUnicode_CompareWithASCIIString(given, names[i]) == 0) {
                index = i;
            }
        }
        if (index < 0 || self->objects[index] != NULL) {
            PyErr_Format(PyExc_TypeError, "%s(): unexpected or repeated argument %R", what, given);
            self->count = count;
            Py_DECREF(self);
            return NULL;
        }
        self->objects[index] = Py_NewRef(args[k]);
    }
    PyObject_GC_Track(self);
    if (!PyContextVar_CheckExact(OBJ(self, R_ACTIVE)) ||
        ((record == record_statement || record == record_round_trip) &&
         !PyContextVar_CheckExact(OBJ(self, S_INSIDE)))) {
        PyErr_Format(PyExc_TypeError, "%s(): active and inside must be ContextVars", what);
        Py_DECREF(self);
        return NULL;
    }
    if (record == record_get &&
        (!PyDict_CheckExact(OBJ(self, C_TARGETS)) || !PyUnicode_Check(OBJ(self, C_IGNORED_ERROR)))) {
        PyErr_Format(PyExc_TypeError, "%s(): targets must be a dict, ignored_error a str", what);
        Py_DECREF(self);
        return NULL;
    }
    if (record == record_statement &&
        (!PyDict_CheckExact(OBJ(self, S_NAMES)) || !PyAnySet_Check(OBJ(self, S_KEPT)) ||
         !PyBool_Check(OBJ(self, S_OVERRIDE)))) {
        PyErr_Format(PyExc_TypeError,
                     "%s(): names must be a dict, kept a set of types, override a bool", what);
        Py_DECREF(self);
        return NULL;
    }
    if ((record == record_round_trip &&
         (!PyDict_CheckExact(OBJ(self, T_NAMES)) || !PyDict_CheckExact(OBJ(self, T_PLAIN)))) ||
        (record == record_engine_checkout && !PyDict_CheckExact(OBJ(self, G_NAMES)))) {
        PyErr_Format(PyExc_TypeError, "%s(): names (and plain) must be a dict", what);
        Py_DECREF(self);
        return NULL;
    }
    if (find_offsets(self) < 0) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

#define COMMON_NAMES \
    "reference", "active", "begin", "failed", "done", "profiler_failed", "kind", "op", "event_class"

static const char *const cache_names[CACHE_FIELDS] = {
    COMMON_NAMES, "targets", "target", "not_found", "ignored_error",
};
static const char *const statement_names[STATEMENT_FIELDS] = {
    COMMON_NAMES, "inside", "names", "snapshot", "kept", "below", "reaches_below", "override",
};

PyDoc_STRVAR(cache_get_doc,
"cache_get(*, reference, active, begin, failed, done, profiler_failed, kind, op, event_class,\n\
          targets, target, not_found, ignored_error) -> Recorder\n\
\n\
pymemcache's ``Client.get`` wrapper (integrations/pymemcache.py, ``reference``) compiled:\n\
``get(key)`` recorded as the reference records it, the server's target read from\n\
``targets`` (else ``target(server)``), the library called as ``get(key, not_found)``.");

static PyObject *
cache_get(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return make_recorder(record_get, "cache_get", cache_names, CACHE_FIELDS, args, nargs, kwnames);
}

PyDoc_STRVAR(statement_execute_doc,
"statement_execute(*, reference, active, begin, failed, done, profiler_failed, kind, op,\n\
                  event_class, inside, names, snapshot, kept, below, reaches_below,\n\
                  override) -> Recorder\n\
\n\
SQLAlchemy's ``do_execute`` wrapper (integrations/sqlalchemy.py, ``reference``) compiled:\n\
``do_execute(cursor, statement, parameters, context)`` on a dialect whose shard ``names``\n\
knows, recorded as the reference records it.");

static PyObject *
statement_execute(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs,
                  PyObject *kwnames)
{
    return make_recorder(record_statement, "statement_execute", statement_names, STATEMENT_FIELDS,
                         args, nargs, kwnames);
}

static const char *const round_trip_names[ROUND_TRIP_FIELDS] = {
    COMMON_NAMES, "inside", "names", "pool_reset", "plain", "below", "reaches_below",
};
static const char *const engine_names[ENGINE_FIELDS] = {COMMON_NAMES, "names"};
static const char *const pool_names[POOL_FIELDS] = {COMMON_NAMES};

PyDoc_STRVAR(round_trip_doc,
"round_trip(*, reference, active, begin, failed, done, profiler_failed, kind, op,\n\
           event_class, inside, names, pool_reset, plain, below, reaches_below) -> Recorder\n\
\n\
SQLAlchemy's ``do_commit``/``do_rollback``/``do_ping`` wrapper (integrations/sqlalchemy.py,\n\
``reference``) compiled: ``method(dbapi_connection)`` on a dialect whose shard ``names``\n\
knows, recorded as the reference records it; ``pool_reset(1)`` (or None) gives ``detail``.\n\
``inside`` is set while it runs unless the method is ``plain[op]`` (DefaultDialect's own)\n\
and no integration in ``below`` records the connection's driver (``reaches_below``; of\n\
the DB-API connection a ``plain[\"proxy\"]`` holds, the pool's ``_ConnectionFairy``).");

static PyObject *
round_trip(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return make_recorder(record_round_trip, "round_trip", round_trip_names, ROUND_TRIP_FIELDS,
                         args, nargs, kwnames);
}

PyDoc_STRVAR(engine_checkout_doc,
"engine_checkout(*, reference, active, begin, failed, done, profiler_failed, kind, op,\n\
                event_class, names) -> Recorder\n\
\n\
SQLAlchemy's ``Engine.raw_connection`` wrapper compiled: called through when the engine's\n\
dialect is in ``names``, else the reference names it.");

static PyObject *
engine_checkout(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs,
                PyObject *kwnames)
{
    return make_recorder(record_engine_checkout, "engine_checkout", engine_names, ENGINE_FIELDS,
                         args, nargs, kwnames);
}

PyDoc_STRVAR(pool_checkout_doc,
"pool_checkout(*, reference, active, begin, failed, done, profiler_failed, kind, op,\n\
              event_class) -> Recorder\n\
\n\
SQLAlchemy's ``QueuePool._do_get`` wrapper compiled: called through when the pool's overflow\n\
has no limit or is below it, else the reference decides whether the checkout waits.");

static PyObject *
pool_checkout(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs,
              PyObject *kwnames)
{
    return make_recorder(record_pool_checkout, "pool_checkout", pool_names, POOL_FIELDS, args,
                         nargs, kwnames);
}

/* ---- a WSGI body's steps (ioprofiler/wsgi.py, python_step) ----------------------------- */

/* ``traces`` without ``trace`` (every time it is there), set as ``active``'s value. */
static int
set_without(PyObject *active, PyObject *traces, PyObject *trace)
{
    PyObject *kept;
    if (PyTuple_Check(traces)) {
        Py_ssize_t n = PyTuple_GET_SIZE(traces), k = 0;
        if ((kept = PyTuple_New(n)) == NULL) {
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *item = PyTuple_GET_ITEM(traces, i);
            if (item != trace) {
                PyTuple_SET_ITEM(kept, k++, Py_NewRef(item));
            }
        }
        if (k < n) {
            Py_SETREF(kept, PyTuple_GetSlice(kept, 0, k));
            if (kept == NULL) {
                return -1;
            }
        }
    }
    else { /* not the tuple ioprofiler keeps there: as Python's tuple(t for t in traces ...) */
        PyObject *items = PySequence_List(traces);
        if (items == NULL) {
            return -1;
        }
        for (Py_ssize_t i = PyList_GET_SIZE(items) - 1; i >= 0; i--) {
            if (PyList_GET_ITEM(items, i) == trace && PySequence_DelItem(items, i) < 0) {
                Py_DECREF(items);
                return -1;
            }
        }
        kept = PyList_AsTuple(items);
        Py_DECREF(items);
        if (kept == NULL) {
            return -1;
        }
    }
    PyObject *token = PyContextVar_Set(active, kept);
    Py_DECREF(kept);
    Py_XDECREF(token);
    return token == NULL ? -1 : 0;
}

/* body.error = body.error or the exception's type name (sinks.error_name: an Exception that
 * is not the end of an iteration), for the sinks. Failing, it leaves the error as it was. */
static void
note_error(PyObject *body, PyObject *exc)
{
    PyObject *known = PyObject_GetAttr(body, str_error);
    int set = known == NULL ? -1 : PyObject_IsTrue(known);
    PyObject *error = NULL;
    if (set > 0) {
        error = Py_NewRef(known);
    }
    else if (set == 0) {
        if (PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_Exception) &&
            !PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_StopIteration) &&
            !PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_StopAsyncIteration)) {
            error = PyObject_GetAttr((PyObject *)Py_TYPE(exc), str_dunder_name);
        }
        else {
            error = Py_NewRef(Py_None);
        }
    }
    Py_XDECREF(known);
    if (error == NULL || PyObject_SetAttr(body, str_error, error) < 0) {
        PyErr_Clear();
    }
    Py_XDECREF(error);
}

PyDoc_STRVAR(step_doc,
"step(active, body, function, *args)\n\
--\n\
\n\
``function(*args)`` with ``body.trace`` recording in the current context during the call\n\
only (``active`` the ContextVar of the open traces): ioprofiler/wsgi.py's ``python_step``\n\
compiled. Its result, or its exception raised on unchanged, the exception's type noted as\n\
``body.error`` first (unless one is noted).");

static PyObject *
step(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 3 || !PyContextVar_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "step(active, body, function, *args)");
        return NULL;
    }
    PyObject *active = args[0], *body = args[1];
    PyObject *trace = PyObject_GetAttr(body, str_trace);
    if (trace == NULL) {
        return NULL;
    }
    PyObject *before, *mine = NULL, *result = NULL;
    if (PyContextVar_Get(active, NULL, &before) < 0) {
        Py_DECREF(trace);
        return NULL;
    }
    if (before == NULL || !PyTuple_Check(before)) {
        PyErr_SetString(PyExc_TypeError, "the open traces are not a tuple");
        goto done;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(before);
    if ((mine = PyTuple_New(n + 1)) == NULL) {
        goto done;
    }
    int again = 0; /* is trace among ``before`` already? */
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(before, i);
        again |= item == trace;
        PyTuple_SET_ITEM(mine, i, Py_NewRef(item));
    }
    PyTuple_SET_ITEM(mine, n, Py_NewRef(trace));
    PyObject *token = PyContextVar_Set(active, mine);
    if (token == NULL) {
        goto done;
    }
    Py_DECREF(token);
    result = PyObject_Vectorcall(args[2], args + 3, nargs - 3, NULL);
    PyObject *exc = result == NULL ? take_exception() : NULL;
    if (exc != NULL) {
        note_error(body, exc);
    }
    /* the call is over: this trace records no more here; the rest stays as the call left it */
    PyObject *now;
    int left = PyContextVar_Get(active, NULL, &now);
    if (left == 0) {
        if (now == mine && !again) {
            token = PyContextVar_Set(active, before);
            Py_XDECREF(token);
            left = token == NULL ? -1 : 0;
        }
        else {
            left = set_without(active, now != NULL ? now : before, trace);
        }
        Py_XDECREF(now);
    }
    if (exc != NULL) {
        if (left < 0) {
            PyErr_Clear(); /* the application's exception goes on, not ours */
        }
        restore_exception(exc);
    }
    else if (left < 0) {
        Py_CLEAR(result); /* as Python's finally would raise it */
    }
done:
    Py_XDECREF(mine);
    Py_XDECREF(before);
    Py_DECREF(trace);
    return result;
}

static PyMethodDef methods[] = {
    {"step", (PyCFunction)(void (*)(void))step, METH_FASTCALL, step_doc},
    {"round_trip", (PyCFunction)(void (*)(void))round_trip, METH_FASTCALL | METH_KEYWORDS,
     round_trip_doc},
    {"engine_checkout", (PyCFunction)(void (*)(void))engine_checkout,
     METH_FASTCALL | METH_KEYWORDS, engine_checkout_doc},
    {"pool_checkout", (PyCFunction)(void (*)(void))pool_checkout, METH_FASTCALL | METH_KEYWORDS,
     pool_checkout_doc},
    {"cache_get", (PyCFunction)(void (*)(void))cache_get, METH_FASTCALL | METH_KEYWORDS,
     cache_get_doc},
    {"statement_execute", (PyCFunction)(void (*)(void))statement_execute,
     METH_FASTCALL | METH_KEYWORDS, statement_execute_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, .m_name = "ioprofiler._recorders",
    .m_doc = "The memcached get and SQLAlchemy statement wrappers, compiled.", .m_size = -1,
    .m_methods = methods,
};

/* The signature MethodPatch calls through the capsule (ioprofiler/_patch.c has its twin). */
typedef PyObject *(*ioprofiler_fastcall)(PyObject *, PyObject *, PyObject *, PyObject *const *,
                                         size_t, PyObject *);

PyMODINIT_FUNC
PyInit__recorders(void)
{
    for (int f = 0; f < EVENT_FIELDS; f++) {
        if ((event_field_strs[f] = PyUnicode_InternFromString(event_field_names[f])) == NULL) {
            return NULL;
        }
    }
    if ((str_server = PyUnicode_InternFromString("server")) == NULL ||
        (str_ignore_exc = PyUnicode_InternFromString("ignore_exc")) == NULL ||
        (str_sock = PyUnicode_InternFromString("sock")) == NULL ||
        (str_class = PyUnicode_InternFromString("__class__")) == NULL ||
        (str_paramstyle = PyUnicode_InternFromString("paramstyle")) == NULL ||
        (str_name = PyUnicode_InternFromString("name")) == NULL ||
        (str_getitem = PyUnicode_InternFromString("__getitem__")) == NULL ||
        (str_dialect = PyUnicode_InternFromString("dialect")) == NULL ||
        (str_max_overflow = PyUnicode_InternFromString("_max_overflow")) == NULL ||
        (str_overflow = PyUnicode_InternFromString("_overflow")) == NULL ||
        (str_proxy = PyUnicode_InternFromString("proxy")) == NULL ||
        (str_trace = PyUnicode_InternFromString("trace")) == NULL ||
        (str_error = PyUnicode_InternFromString("error")) == NULL ||
        (str_dunder_name = PyUnicode_InternFromString("__name__")) == NULL ||
        (str_reset_code = PyUnicode_InternFromString("reset_code")) == NULL ||
        (str_called_from = PyUnicode_InternFromString("called_from")) == NULL ||
        (depth_zero = PyLong_FromLong(0)) == NULL || (frames_four = PyLong_FromLong(4)) == NULL ||
        (str_dbapi_connection = PyUnicode_InternFromString("dbapi_connection")) == NULL ||
        (depth_one = PyLong_FromLong(1)) == NULL) {
        return NULL;
    }
    if (PyType_Ready(&Recorder_Type) < 0) {
        return NULL;
    }
    object_class_descriptor = _PyType_Lookup(&PyBaseObject_Type, str_class); /* immortal */
    dict_getitem = _PyType_Lookup(&PyDict_Type, str_getitem);                /* the same */
    if (object_class_descriptor == NULL || dict_getitem == NULL) {
        PyErr_SetString(PyExc_ImportError, "object.__class__ or dict.__getitem__ is missing");
        return NULL;
    }
    /* Its context is the Recorder type: MethodPatch calls through it only for a Recorder. */
    PyObject *capsule = PyCapsule_New((void *)(ioprofiler_fastcall)recorder_fastcall,
                                      "ioprofiler._recorders.fastcall", NULL);
    if (capsule == NULL || PyCapsule_SetContext(capsule, &Recorder_Type) < 0 ||
        PyDict_SetItemString(Recorder_Type.tp_dict, "_ioprofiler_fastcall", capsule) < 0) {
        Py_XDECREF(capsule);
        return NULL;
    }
    Py_DECREF(capsule);
    PyType_Modified(&Recorder_Type);
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, "Recorder", (PyObject *)&Recorder_Type) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}

#else /* a free-threaded build */

PyMODINIT_FUNC
PyInit__recorders(void)
{
    PyErr_SetString(PyExc_ImportError,
                    "ioprofiler._recorders reads dictionaries the GIL guards: on a free-threaded "
                    "build ioprofiler records with its Python wrappers");
    return NULL;
}

#endif
