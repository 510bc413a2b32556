/* ioprofiler._speedups: the callsite lookup without frame objects.
 *
 * ioprofiler.callsite finds the application's frame that made an I/O call by walking
 * ``frame.f_back`` from the library frame that called the wrapper. From CPython 3.11 on every
 * ``f_back`` read of a frame nobody has looked at yet creates its frame object (the
 * interpreter keeps frames in its own struct, ``_PyInterpreterFrame``, and makes the object on
 * demand), and a SQLAlchemy statement runs about six such frames above the wrapper; on 3.10
 * the frames exist, but walking them in Python is some twenty bytecodes a frame.
 *
 * This module walks the interpreter's frames themselves, the way ``sys._getframe`` and
 * ``frame.f_back`` link them (incomplete frames skipped: frames still setting up, and 3.12's
 * C-stack shim frames), reading each frame's code object and, for the answer, its line as
 * ``frame.f_lineno`` computes it. Deciding "library or application?" and remembering the
 * chains seen stay in ioprofiler.callsite's dictionaries: this module only reads them, and
 * hands anything it has not seen decided to the pure-Python lookup, so both give the same
 * answer. See ``install`` and ``find`` below.
 *
 * It reads CPython's frame layout, which differs between minor versions: it is built for
 * CPython 3.10 to 3.13 (each version's layout in one block below, "the frames, per version").
 * On any other interpreter, and on a free-threaded build, the module refuses to import and
 * ioprofiler.callsite stays pure Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if !defined(PYPY_VERSION) && !defined(Py_GIL_DISABLED) && PY_VERSION_HEX >= 0x030A0000 && \
    PY_VERSION_HEX < 0x030E0000
#define IOP_SUPPORTED 1
#else
#define IOP_SUPPORTED 0
#endif

#if IOP_SUPPORTED

/* -- the frames, per version ----------------------------------------------------------------
 *
 * Everything below reads frames through these few functions; each version's layout is here
 * and nowhere else. IFrame is what the interpreter links its frames by:
 *
 *   3.10       PyFrameObject, always made (cpython/frameobject.h: f_back, f_code, f_lasti)
 *   3.11-3.13  _PyInterpreterFrame (internal/pycore_frame.h): `previous`, its code (3.13
 *              calls the field f_executable), its frame object if one was made; incomplete
 *              frames (setting up, and 3.12+'s C-stack shims) are skipped as sys._getframe
 *              skips them. The thread's newest frame: tstate->cframe (3.11-3.12),
 *              tstate->current_frame (3.13).
 *
 * 3.14 (not on these machines; planned from its headers' changes): f_executable becomes a
 * tagged _PyStackRef (read through _PyFrame_GetCode, as 3.13 already is here), the struct and
 * its inline functions move to internal/pycore_interpframe.h, C-stack shim frames become
 * FRAME_OWNED_BY_INTERPRETER and each thread's stack ends at a sentinel frame owned by the
 * thread state (both incomplete to _PyFrame_IsIncomplete, so skipped): a new #include and a
 * version bound, nothing below this block. */

#if PY_VERSION_HEX >= 0x030B0000
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include "internal/pycore_frame.h"

typedef _PyInterpreterFrame IFrame;

static inline PyCodeObject *
frame_code(IFrame *f)
{
#if PY_VERSION_HEX >= 0x030D0000
    return _PyFrame_GetCode(f); /* CPython's own accessor: f_executable, as each version has it */
#else
    return f->f_code;
#endif
}

/* The first complete frame from f on (sys._getframe's and f_back's skipping). */
static inline IFrame *
first_complete(IFrame *f)
{
    while (f != NULL && _PyFrame_IsIncomplete(f)) {
        f = f->previous;
    }
    return f;
}

/* frame.f_back, as PyFrame_GetBack finds it, without making a frame object. */
static inline IFrame *
back(IFrame *f)
{
    PyFrameObject *obj = f->frame_obj;
    if (obj != NULL && obj->f_back != NULL) {
        return obj->f_back->f_frame;
    }
    return first_complete(f->previous);
}

/* The frame below f as sys._getframe counts them (which ignores f_back). */
static inline IFrame *
caller_of(IFrame *f)
{
    return first_complete(f->previous);
}

/* The newest frame of this thread: the Python function calling us (C calls have none). */
static inline IFrame *
newest_frame(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyThreadState_Get()->current_frame;
#else
    return PyThreadState_Get()->cframe->current_frame;
#endif
}

/* The frame a frame object stands for. */
static inline IFrame *
frame_of(PyFrameObject *obj)
{
    return obj->f_frame;
}

/* The line a tracer or a debugger's jump set on f's frame object, or 0. */
static inline int
line_set(IFrame *f)
{
    return f->frame_obj != NULL ? f->frame_obj->f_lineno : 0;
}

/* The offset, in code units, of f's current instruction (frame.f_lasti / 2). */
static inline int
last_offset(IFrame *f)
{
    return _PyInterpreterFrame_LASTI(f);
}

#else /* 3.10: every frame is a PyFrameObject */
#include <frameobject.h> /* the struct: cpython/frameobject.h */

typedef PyFrameObject IFrame;

static inline PyCodeObject *
frame_code(IFrame *f)
{
    return f->f_code;
}

static inline IFrame *
back(IFrame *f)
{
    return f->f_back;
}

static inline IFrame *
caller_of(IFrame *f)
{
    return f->f_back;
}

static inline IFrame *
newest_frame(void)
{
    return PyEval_GetFrame();
}

static inline IFrame *
frame_of(PyFrameObject *obj)
{
    return obj;
}

/* 3.10's PyFrame_GetLineNumber: f_lineno when set (a tracer), else the instruction's line. */
static inline int
line_set(IFrame *f)
{
    return f->f_lineno;
}

static inline int
last_offset(IFrame *f)
{
    return f->f_lasti;
}

#endif

/* sys._getframe(depth) counted from the Python function calling us. */
static IFrame *
frame_at(long depth)
{
    IFrame *f = newest_frame();
    while (f != NULL && depth > 0) {
        f = caller_of(f);
        --depth;
    }
    return f;
}

/* Set by install(): callsite's dictionaries and its pure-Python fallbacks (strong refs). */
static PyObject *hints_dict = NULL;  /* id(entry code) -> (entry code, (chain, ...)) */
static PyObject *known_dict = NULL;  /* id(code) -> (code, is library?, sites by line) */
static PyObject *slow_find = NULL;   /* the pure-Python find(depth) */
static PyObject *parent_frame = NULL; /* () -> the parent greenlet's frame, or None */
static PyObject *awaiting_site = NULL; /* () -> the site awaiting the running task, or None */

/* Outcomes of a walk besides an answer. */
#define ASK_PYTHON ((PyObject *)1) /* something not decided yet: the pure path decides */
#define STACK_ENDED ((PyObject *)2) /* every frame a library's, to the end of this stack */
#define IS_LIBRARY ((PyObject *)3)  /* this frame is a library's: look further */

/* -- what the lookup has read, by pointer ------------------------------------------------
 *
 * callsite's dictionaries are keyed by id(code): each read makes an int and hashes it, three
 * times per call (the entry's hints, the answer's decision, its site), some 900 instructions
 * of a recorded get's 3,400. These tables remember what was read, keyed by the code object's
 * address (and, for sites, the instruction offset). Each value holds its code object (a
 * known tuple's, a hint's or a site's first item), so an address cannot be reused while it
 * is a key. They only ever copy what the dictionaries hold: ``forget()`` empties them when
 * callsite changes its dictionaries other than by adding (callsite.forget, a cleared cache,
 * a learnt chain), and a table three quarters full starts again empty. */

typedef struct {
    const void *code; /* the key's address; NULL: an empty slot */
    int offset;       /* the key's instruction offset; 0 for tables keyed by code alone */
    PyObject *value;  /* strong */
} Memo;

typedef struct {
    Memo *slots; /* NULL until the first put */
    size_t used;
} MemoTable;

#define MEMO_BITS 12
#define MEMO_CAPACITY (1 << MEMO_BITS) /* 96 kB a table on 64-bit */
#define MEMO_MASK (MEMO_CAPACITY - 1)

static MemoTable decided_memo; /* code -> its known tuple */
static MemoTable hint_memo;    /* entry code -> its hint, or itself when it has none */
static MemoTable site_memo;    /* (code, offset) -> the site of that instruction's line */

static inline size_t
memo_index(const void *code, int offset)
{
    uint64_t h = ((uint64_t)(uintptr_t)code >> 4) ^ ((uint64_t)(unsigned int)offset << 29);
    h *= 0x9E3779B97F4A7C15ULL; /* Fibonacci hashing: the product's top bits */
    return (size_t)(h >> (64 - MEMO_BITS));
}

/* The value remembered for (code, offset), borrowed, or NULL. */
static inline PyObject *
memo_get(MemoTable *table, const void *code, int offset)
{
    Memo *slots = table->slots;
    if (slots == NULL) {
        return NULL;
    }
    for (size_t i = memo_index(code, offset);; i = (i + 1) & MEMO_MASK) {
        if (slots[i].code == code && slots[i].offset == offset) {
            return slots[i].value;
        }
        if (slots[i].code == NULL) {
            return NULL;
        }
    }
}

static void
memo_clear(MemoTable *table)
{
    /* Detached first: releasing a value may run a finaliser that looks something up. */
    Memo *slots = table->slots;
    table->slots = NULL;
    table->used = 0;
    if (slots != NULL) { /* a scan of the whole table: only when callsite's caches change */
        for (size_t i = 0; i < MEMO_CAPACITY; i++) {
            Py_XDECREF(slots[i].value);
        }
        PyMem_Free(slots);
    }
}

/* Remember value for (code, offset): 0, or -1 with an exception set. */
static int
memo_put(MemoTable *table, const void *code, int offset, PyObject *value)
{
    if (table->used >= MEMO_CAPACITY / 4 * 3) {
        memo_clear(table);
    }
    if (table->slots == NULL && (table->slots = PyMem_Calloc(MEMO_CAPACITY, sizeof(Memo))) == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    Memo *slots = table->slots;
    size_t i = memo_index(code, offset);
    while (slots[i].code != NULL && !(slots[i].code == code && slots[i].offset == offset)) {
        i = (i + 1) & MEMO_MASK;
    }
    PyObject *old = slots[i].value;
    if (slots[i].code == NULL) {
        table->used++;
    }
    slots[i].code = code;
    slots[i].offset = offset;
    slots[i].value = Py_NewRef(value);
    Py_XDECREF(old);
    return 0;
}

static void
forget_memos(void)
{
    memo_clear(&decided_memo);
    memo_clear(&hint_memo);
    memo_clear(&site_memo);
}

/* dict[id(obj)], borrowed: NULL when absent, or with an exception set. */
static PyObject *
by_id(PyObject *dict, void *obj)
{
    PyObject *key = PyLong_FromVoidPtr(obj);
    if (key == NULL) {
        return NULL;
    }
    PyObject *value = PyDict_GetItemWithError(dict, key);
    Py_DECREF(key);
    return value;
}

/* by_id(dict, code), remembered in memo when the value is a tuple holding code first. With
 * absent_too, its absence is remembered as well (as code itself): for a dictionary callsite
 * only adds to after telling forget(). */
static PyObject *
remembered_by_id(MemoTable *memo, PyObject *dict, PyCodeObject *code, int absent_too)
{
    PyObject *value = memo_get(memo, code, 0);
    if (value != NULL) {
        return value == (PyObject *)code ? NULL : value;
    }
    value = by_id(dict, code);
    PyObject *remembered = value;
    if (value == NULL) {
        if (!absent_too || PyErr_Occurred()) {
            return NULL;
        }
        remembered = (PyObject *)code;
    }
    else if (!PyTuple_CheckExact(value) || PyTuple_GET_SIZE(value) < 1 ||
             PyTuple_GET_ITEM(value, 0) != (PyObject *)code) {
        return value;
    }
    /* Held: a full table is emptied first, and a finaliser may clear the dictionary. */
    Py_INCREF(remembered);
    int failed = memo_put(memo, code, 0, remembered) < 0;
    Py_DECREF(remembered); /* the memo holds it now */
    return failed ? NULL : value;
}

/* known[id(code)]: a borrowed (code, is library?, sites by line) tuple, or ASK_PYTHON, or
 * NULL with an exception set. */
static PyObject *
decision(PyCodeObject *code, int *is_library)
{
    PyObject *known = remembered_by_id(&decided_memo, known_dict, code, 0);
    if (known == NULL) {
        return PyErr_Occurred() ? NULL : ASK_PYTHON;
    }
    if (!PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 3 ||
        !PyDict_CheckExact(PyTuple_GET_ITEM(known, 2))) {
        return ASK_PYTHON;
    }
    PyObject *flag = PyTuple_GET_ITEM(known, 1);
    if (flag == Py_True || flag == Py_False) {
        *is_library = flag == Py_True;
        return known;
    }
    int truth = PyObject_IsTrue(flag);
    if (truth < 0) {
        return NULL;
    }
    *is_library = truth;
    return known;
}

/* The one (code, line) tuple of this line (callsite._site): a new reference, or ASK_PYTHON,
 * or NULL with an exception set. */
static PyObject *
site_at_line(PyObject *known, int line)
{
    if (line < 0) {
        return ASK_PYTHON; /* f_lineno is None here: rare, left to the pure path */
    }
    PyObject *sites = PyTuple_GET_ITEM(known, 2);
    PyObject *key = PyLong_FromLong(line);
    if (key == NULL) {
        return NULL;
    }
    PyObject *site = PyDict_GetItemWithError(sites, key);
    if (site != NULL) {
        Py_INCREF(site);
        Py_DECREF(key);
        return site;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    /* Allocating may run the garbage collector, and a finaliser may clear the caches. */
    Py_INCREF(known);
    PyObject *made = PyTuple_Pack(2, PyTuple_GET_ITEM(known, 0), key);
    if (made != NULL) {
        site = PyDict_SetDefault(sites, key, made);
        Py_XINCREF(site);
        Py_DECREF(made);
    }
    Py_DECREF(known);
    Py_DECREF(key);
    return site;
}

/* f's site at its current line, as frame.f_lineno (PyFrame_GetLineNumber) gives it: a line
 * set by a tracer or a debugger's jump, else the line of the last instruction. The line
 * table walk is done once per instruction offset: the site memo remembers it. */
static PyObject *
site_of(PyObject *known, IFrame *f)
{
    int line = line_set(f);
    if (line != 0) {
        return site_at_line(known, line);
    }
    PyCodeObject *code = frame_code(f);
    int offset = last_offset(f);
    PyObject *site = memo_get(&site_memo, code, offset);
    if (site != NULL) {
        return Py_NewRef(site);
    }
    site = site_at_line(known, PyCode_Addr2Line(code, offset * (int)sizeof(_Py_CODEUNIT)));
    if (site != NULL && site != ASK_PYTHON && memo_put(&site_memo, code, offset, site) < 0) {
        Py_CLEAR(site);
    }
    return site;
}

/* f's site when f is the application's frame, else IS_LIBRARY, ASK_PYTHON, or NULL. */
static PyObject *
answer(IFrame *f)
{
    int is_library;
    PyObject *known = decision(frame_code(f), &is_library);
    if (known == NULL || known == ASK_PYTHON) {
        return known;
    }
    return is_library ? IS_LIBRARY : site_of(known, f);
}

/* A coroutine's code (inspect's CO_COROUTINE, CO_ITERABLE_COROUTINE, CO_ASYNC_GENERATOR). */
#define ASYNC_CODE (CO_COROUTINE | CO_ITERABLE_COROUTINE | CO_ASYNC_GENERATOR)

/* callsite._walk on one stack: the first application frame's site from f on. Past a task
 * whose coroutines are all a library's run the event loop and its caller: the site is the
 * coroutine awaiting the task (callsite._awaiting_site), once per lookup (*left_task). */
static PyObject *
walk(IFrame *f, int *left_task)
{
    while (f != NULL) {
        PyObject *site = answer(f);
        if (site != IS_LIBRARY) {
            return site;
        }
        IFrame *below = back(f);
        if (below != NULL && !*left_task && (frame_code(f)->co_flags & ASYNC_CODE) &&
            !(frame_code(below)->co_flags & ASYNC_CODE)) {
            *left_task = 1;
            site = PyObject_CallNoArgs(awaiting_site);
            if (site == NULL || PyTuple_Check(site)) {
                return site;
            }
            Py_DECREF(site); /* None: no application frame awaits it; walk on */
        }
        f = below;
    }
    return STACK_ENDED;
}

/* The site after the first of chains that matches the frames above entry and ends at an
 * application frame, or ASK_PYTHON when none does. */
static PyObject *
match_chains(IFrame *entry, PyObject *chains)
{
    Py_ssize_t count = PyTuple_GET_SIZE(chains);
    for (Py_ssize_t c = 0; c < count; c++) {
        PyObject *chain = PyTuple_GET_ITEM(chains, c);
        if (!PyTuple_CheckExact(chain)) {
            return ASK_PYTHON;
        }
        Py_ssize_t length = PyTuple_GET_SIZE(chain);
        IFrame *f = back(entry);
        Py_ssize_t i = 0;
        while (i < length && f != NULL && (PyObject *)frame_code(f) == PyTuple_GET_ITEM(chain, i)) {
            f = back(f);
            i++;
        }
        if (i < length || f == NULL) {
            continue; /* another chain, or the stack ended inside this one */
        }
        PyObject *site = answer(f);
        if (site != IS_LIBRARY) {
            return site;
        }
    }
    return ASK_PYTHON;
}

/* callsite.find's remembered chains for entry's code: match_chains, or ASK_PYTHON. */
static PyObject *
match_hints(IFrame *entry)
{
    PyObject *hint = remembered_by_id(&hint_memo, hints_dict, frame_code(entry), 1);
    if (hint == NULL) {
        return PyErr_Occurred() ? NULL : ASK_PYTHON;
    }
    if (!PyTuple_CheckExact(hint) || PyTuple_GET_SIZE(hint) != 2 ||
        !PyTuple_CheckExact(PyTuple_GET_ITEM(hint, 1))) {
        return ASK_PYTHON;
    }
    /* Held: making a site allocates, and a finaliser run by the collector may clear _hints. */
    Py_INCREF(hint);
    PyObject *site = match_chains(entry, PyTuple_GET_ITEM(hint, 1));
    Py_DECREF(hint);
    return site;
}

/* The pure path, called as callsite.find would be from our caller. */
static PyObject *
ask_python(PyObject *depth)
{
    return PyObject_CallOneArg(slow_find, depth);
}

PyDoc_STRVAR(find_doc,
"find(depth) -> (code, line) | None\n\
\n\
ioprofiler.callsite.find, walking the interpreter's frames: the first application frame\n\
above the caller's ``depth``-th caller. Anything not decided yet goes to the pure path.");

/* find(depth) for a depth counted from the Python function calling our caller's C code. */
static PyObject *
find_at(long depth)
{
    IFrame *entry = depth < 0 ? NULL : frame_at(depth);
    PyObject *site = entry == NULL ? ASK_PYTHON : match_hints(entry);
    int left_task = 0;
    if (site == ASK_PYTHON && entry != NULL) {
        site = walk(entry, &left_task);
    }
    if (site == STACK_ENDED) {
        /* A greenlet's stack ended (SQLAlchemy's asyncio engines run the statement in one):
         * the walk goes on in the frame that switched to it, once. */
        PyObject *parent = PyObject_CallNoArgs(parent_frame);
        if (parent == NULL || parent == Py_None) {
            return parent;
        }
        if (!PyFrame_Check(parent)) {
            Py_DECREF(parent);
            site = ASK_PYTHON;
        }
        else {
            site = walk(frame_of((PyFrameObject *)parent), &left_task);
            Py_DECREF(parent);
            if (site == STACK_ENDED) {
                Py_RETURN_NONE;
            }
        }
    }
    if (site != ASK_PYTHON) {
        return site;
    }
    PyObject *depth_obj = PyLong_FromLong(depth);
    if (depth_obj == NULL) {
        return NULL;
    }
    site = ask_python(depth_obj);
    Py_DECREF(depth_obj);
    return site;
}

static PyObject *
find(PyObject *module, PyObject *depth_obj)
{
    if (slow_find == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ioprofiler._speedups.install() was not called");
        return NULL;
    }
    long depth = PyLong_AsLong(depth_obj);
    if (depth == -1 && PyErr_Occurred()) {
        return NULL;
    }
    return find_at(depth);
}

PyDoc_STRVAR(install_doc,
"install(hints, known, slow_find, parent_frame, awaiting_site) -> None\n\
\n\
Give ``find`` ioprofiler.callsite's dictionaries (read, never written but for a line's\n\
site), its pure-Python ``find(depth)`` for anything not decided yet, the function that\n\
returns the parent greenlet's frame (or None), and the one that returns the site of the\n\
coroutine awaiting the running asyncio task (or None).");

static PyObject *
install(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "install() takes 5 arguments");
        return NULL;
    }
    if (!PyDict_CheckExact(args[0]) || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "install(): hints and known must be dicts");
        return NULL;
    }
    if (!PyCallable_Check(args[2]) || !PyCallable_Check(args[3]) || !PyCallable_Check(args[4])) {
        PyErr_SetString(PyExc_TypeError,
                        "install(): slow_find, parent_frame and awaiting_site must be callable");
        return NULL;
    }
    Py_XSETREF(hints_dict, Py_NewRef(args[0]));
    Py_XSETREF(known_dict, Py_NewRef(args[1]));
    Py_XSETREF(slow_find, Py_NewRef(args[2]));
    Py_XSETREF(parent_frame, Py_NewRef(args[3]));
    Py_XSETREF(awaiting_site, Py_NewRef(args[4]));
    forget_memos();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(forget_doc,
"forget() -> None\n\
\n\
Drop what ``find`` remembers of callsite's dictionaries. callsite calls it whenever it changes\n\
them other than by adding an entry: a cleared cache, a chain learnt for an entry.");

static PyObject *
forget(PyObject *module, PyObject *unused)
{
    forget_memos();
    Py_RETURN_NONE;
}

/* -- begin(): recording.begin in one call ------------------------------------------------
 *
 * Making the event (a slotted object of the class for its kind, every field at its default),
 * finding its callsite, appending it to every open trace and starting its clock is the same
 * work on every recorded call; here it is one C call instead of some ninety bytecodes. The
 * classes and their defaults come from ioprofiler.recording (install_events), which keeps
 * the pure-Python begin as the reference and for every kind not registered here. */

#include "structmember.h" /* T_OBJECT_EX */
#include "_slots.h"     /* slot_offset */

#define MAX_FIELDS 16

/* One event class begin() makes itself: its slots' offsets and their defaults. */
typedef struct {
    PyTypeObject *type;
    Py_ssize_t count;
    Py_ssize_t offsets[MAX_FIELDS];
    PyObject *defaults[MAX_FIELDS];
} EventClass;

enum { STATEMENT, CACHE_CALL, CONNECTION_OP, EVENT_CLASSES };
static EventClass classes[EVENT_CLASSES];

/* The fields every event has (Event.__slots__ but __dict__), by offset. */
enum { F_OP, F_TARGET, F_ORIGIN, F_START, F_END, F_SITE, F_OVERFLOW, BASE_FIELDS };
static const char *const base_names[BASE_FIELDS] = {
    "op", "_target", "_origin_ns", "start_ns", "end_ns", "_site", "_overflow",
};
static Py_ssize_t base_offsets[BASE_FIELDS];

/* The fields of a trace begin() reads, by offset, for traces of exactly this class. */
enum { T_OPEN, T_EVENTS, T_MAX_EVENTS, T_START, TRACE_FIELDS };
static const char *const trace_names[TRACE_FIELDS] = {"_open", "_events", "max_events", "start_ns"};
static PyObject *trace_strs[TRACE_FIELDS];
static Py_ssize_t trace_offsets[TRACE_FIELDS];
static PyTypeObject *trace_type = NULL;

/* trace.<field>, a new reference: read from its slot when trace is a Trace, else as Python does. */
static inline PyObject *
trace_field(PyObject *trace, int field)
{
    if (Py_IS_TYPE(trace, trace_type)) {
        PyObject *value = *(PyObject **)((char *)trace + trace_offsets[field]);
        if (value != NULL) {
            return Py_NewRef(value);
        }
    }
    return PyObject_GetAttr(trace, trace_strs[field]);
}

static PyObject *kind_db = NULL, *kind_cache = NULL; /* "db", "cache" */
static PyObject *connection_ops = NULL;              /* frozenset of ops that are not statements */
static PyObject *slow_begin = NULL;                  /* recording's pure-Python begin */
static PyObject *callsite_dict = NULL;               /* ioprofiler.callsite's globals */
static PyObject *str_find, *str_depth, *zero;

/* time.perf_counter_ns() (ioprofiler/_recorders.c has its twin). */
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

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

/* True when every object slot of ec's class and its bases is one begin() fills, once. */
static int
fills_every_slot_once(EventClass *ec, const Py_ssize_t *base)
{
    for (Py_ssize_t i = 0; i < ec->count; i++) {
        for (Py_ssize_t j = 0; j < BASE_FIELDS + i; j++) {
            if (ec->offsets[i] == (j < BASE_FIELDS ? base[j] : ec->offsets[j - BASE_FIELDS])) {
                PyErr_Format(PyExc_TypeError, "install_events(): %s has a field named twice",
                             ec->type->tp_name);
                return 0;
            }
        }
    }
    for (Py_ssize_t m = 0; m < PyTuple_GET_SIZE(ec->type->tp_mro); m++) {
        PyTypeObject *klass = (PyTypeObject *)PyTuple_GET_ITEM(ec->type->tp_mro, m);
        for (PyMemberDef *member = klass->tp_members; member && member->name; member++) {
            if (member->type != T_OBJECT_EX) {
                continue; /* __dict__, __weakref__ offsets and the like */
            }
            int found = 0;
            for (int b = 0; b < BASE_FIELDS && !found; b++) {
                found = base[b] == member->offset;
            }
            for (Py_ssize_t i = 0; i < ec->count && !found; i++) {
                found = ec->offsets[i] == member->offset;
            }
            if (!found) {
                PyErr_Format(PyExc_TypeError, "begin() would leave %s.%s unset",
                             ec->type->tp_name, member->name);
                return 0;
            }
        }
    }
    return 1;
}

/* *ec from (cls, ((name, default), ...)), cls an Event subclass; borrowed references. */
static int
describe_class(PyTypeObject *event, const Py_ssize_t *base, PyObject *cls, PyObject *fields,
               EventClass *ec)
{
    if (!PyType_Check(cls) || !PyType_IsSubtype((PyTypeObject *)cls, event) ||
        ((PyTypeObject *)cls)->tp_itemsize != 0 || !PyTuple_CheckExact(fields) ||
        PyTuple_GET_SIZE(fields) > MAX_FIELDS) {
        PyErr_SetString(PyExc_TypeError,
                        "install_events(): (a subclass of event, ((name, default), ...))");
        return -1;
    }
    ec->type = (PyTypeObject *)cls;
    ec->count = PyTuple_GET_SIZE(fields);
    for (Py_ssize_t i = 0; i < ec->count; i++) {
        PyObject *pair = PyTuple_GET_ITEM(fields, i);
        const char *name;
        if (!PyTuple_CheckExact(pair) || PyTuple_GET_SIZE(pair) != 2 ||
            (name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(pair, 0))) == NULL) {
            PyErr_SetString(PyExc_TypeError, "install_events(): fields are (name, default) pairs");
            return -1;
        }
        if ((ec->offsets[i] = slot_offset(ec->type, name, 1)) < 0) {
            return -1;
        }
        ec->defaults[i] = PyTuple_GET_ITEM(pair, 1);
    }
    return fills_every_slot_once(ec, base) ? 0 : -1;
}

/* classes[index] = *ec, taking references to its class and defaults. */
static void
keep_class(int index, EventClass *ec)
{
    for (Py_ssize_t i = 0; i < ec->count; i++) {
        Py_INCREF(ec->defaults[i]);
    }
    Py_INCREF(ec->type);
    EventClass old = classes[index];
    classes[index] = *ec;
    for (Py_ssize_t i = 0; i < old.count; i++) {
        Py_DECREF(old.defaults[i]);
    }
    Py_XDECREF(old.type);
}

PyDoc_STRVAR(install_events_doc,
"install_events(event, statement, statement_fields, cache_call, cache_fields, db, cache,\n\
               connection_ops, slow_begin, callsite_globals, trace\n\
               [, connection_op, connection_op_fields]) -> None\n\
\n\
Teach ``begin`` the event classes it makes itself: ``event`` (the base, whose fields begin\n\
sets on every event), ``statement`` for kind ``db`` when the op is not in ``connection_ops``,\n\
``cache_call`` for kind ``cache``, each with its own fields' defaults as ((name, value), ...).\n\
With ``connection_op`` (and its fields' defaults), kind ``db`` with an op in\n\
``connection_ops`` too (a COMMIT, a ROLLBACK, a PING); without it that stays as it was.\n\
Every other kind goes to ``slow_begin``. ``trace``: the Trace class, whose slots begin reads\n\
directly. Raises TypeError, and changes nothing, when a class is not an ``event`` or has a\n\
slot that begin would leave unset or write twice.");

static PyObject *
install_events(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11 && nargs != 13) {
        PyErr_SetString(PyExc_TypeError, "install_events() takes 11 or 13 arguments");
        return NULL;
    }
    if (!PyType_Check(args[0]) || !PyUnicode_Check(args[5]) || !PyUnicode_Check(args[6]) ||
        !PyAnySet_Check(args[7]) || !PyCallable_Check(args[8]) || !PyDict_Check(args[9]) ||
        !PyType_Check(args[10])) {
        PyErr_SetString(PyExc_TypeError, "install_events(): wrong argument types");
        return NULL;
    }
    /* Everything checked before anything changes: begin may be in use already. */
    PyTypeObject *event = (PyTypeObject *)args[0];
    Py_ssize_t base[BASE_FIELDS], trace[TRACE_FIELDS];
    for (int b = 0; b < BASE_FIELDS; b++) {
        if ((base[b] = slot_offset(event, base_names[b], 1)) < 0) {
            return NULL;
        }
    }
    for (int t = 0; t < TRACE_FIELDS; t++) {
        if ((trace[t] = slot_offset((PyTypeObject *)args[10], trace_names[t], 1)) < 0) {
            return NULL;
        }
    }
    EventClass statement, cache_call, connection_op;
    if (describe_class(event, base, args[1], args[2], &statement) < 0 ||
        describe_class(event, base, args[3], args[4], &cache_call) < 0 ||
        (nargs == 13 && describe_class(event, base, args[11], args[12], &connection_op) < 0)) {
        return NULL;
    }
    memcpy(base_offsets, base, sizeof(base));
    memcpy(trace_offsets, trace, sizeof(trace));
    Py_XSETREF(trace_type, (PyTypeObject *)Py_NewRef(args[10]));
    keep_class(STATEMENT, &statement);
    keep_class(CACHE_CALL, &cache_call);
    if (nargs == 13) {
        keep_class(CONNECTION_OP, &connection_op);
    }
    Py_XSETREF(kind_db, Py_NewRef(args[5]));
    Py_XSETREF(kind_cache, Py_NewRef(args[6]));
    Py_XSETREF(connection_ops, Py_NewRef(args[7]));
    Py_XSETREF(slow_begin, Py_NewRef(args[8]));
    Py_XSETREF(callsite_dict, Py_NewRef(args[9]));
    Py_RETURN_NONE;
}

static int
same_str(PyObject *a, PyObject *b)
{
    if (a == b) {
        return 1;
    }
    return PyUnicode_CheckExact(a) && PyUnicode_Compare(a, b) == 0;
}

/* The class begin() makes for (kind, op): an EventClass, or NULL when slow_begin decides. */
static EventClass *
class_for(PyObject *kind, PyObject *op)
{
    if (kind == kind_db && PySet_Contains(connection_ops, op) == 0) {
        return &classes[STATEMENT]; /* the usual call: the module's own constant */
    }
    PyErr_Clear();
    if (same_str(kind, kind_cache)) {
        return &classes[CACHE_CALL];
    }
    if (same_str(kind, kind_db)) {
        int is_op = PySet_Contains(connection_ops, op);
        if (is_op == 0) {
            return &classes[STATEMENT];
        }
        if (is_op > 0 && classes[CONNECTION_OP].type != NULL) {
            return &classes[CONNECTION_OP];
        }
        PyErr_Clear(); /* an unhashable op: slow_begin says what it makes of it */
    }
    return NULL;
}

/* The callsite, as callsite.find(depth) would give it from recording.begin's frame. */
static PyObject *
site_for(long depth)
{
    PyObject *finder = PyDict_GetItemWithError(callsite_dict, str_find);
    if (finder == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
    }
    /* No Python frame of our own here: one level less than from recording.begin. */
    if (PyCFunction_Check(finder) && PyCFunction_GET_FUNCTION(finder) == (PyCFunction)find &&
        slow_find != NULL) {
        return find_at(depth - 1);
    }
    Py_INCREF(finder); /* patched (a benchmark's ablation, a test): called as it is */
    PyObject *depth_obj = PyLong_FromLong(depth - 1);
    PyObject *site = depth_obj == NULL ? NULL : PyObject_CallOneArg(finder, depth_obj);
    Py_XDECREF(depth_obj);
    Py_DECREF(finder);
    return site;
}

/* len(events) < max_events, as Python compares them: 1, 0, or -1 with an exception set. */
static int
has_room(PyObject *events, PyObject *max_events)
{
    Py_ssize_t length = PyObject_Length(events);
    if (length < 0) {
        return -1;
    }
    if (PyLong_CheckExact(max_events)) {
        int overflow;
        long long bound = PyLong_AsLongLongAndOverflow(max_events, &overflow);
        if (overflow == 0 && !(bound == -1 && PyErr_Occurred())) {
            return length < bound;
        }
        PyErr_Clear();
        if (overflow != 0) {
            return overflow > 0; /* past a long long either way */
        }
    }
    PyObject *size = PyLong_FromSsize_t(length);
    if (size == NULL) {
        return -1;
    }
    int room = PyObject_RichCompareBool(size, max_events, Py_LT);
    Py_DECREF(size);
    return room;
}

/* events.append(event): a list's own append, or whatever append a list subclass has. */
static int
append(PyObject *events, PyObject *event)
{
    if (PyList_CheckExact(events)) {
        return PyList_Append(events, event);
    }
    PyObject *result = PyObject_CallMethod(events, "append", "O", event);
    Py_XDECREF(result);
    return result == NULL ? -1 : 0;
}

/* Append event to every open trace of traces, or count it in its overflow past a trace's
 * bound (Trace._tally, when the event is done). */
static int
append_to_traces(PyObject *event, PyObject *traces)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(traces); i++) {
        PyObject *trace = PyTuple_GET_ITEM(traces, i);
        PyObject *open = trace_field(trace, T_OPEN);
        int is_open = open == NULL ? -1 : PyObject_IsTrue(open);
        Py_XDECREF(open);
        if (is_open <= 0) {
            if (is_open < 0) {
                return -1;
            }
            continue;
        }
        PyObject *events = trace_field(trace, T_EVENTS);
        if (events == NULL) {
            return -1;
        }
        PyObject *max_events = trace_field(trace, T_MAX_EVENTS);
        int room = max_events == NULL ? -1 : has_room(events, max_events);
        Py_XDECREF(max_events);
        int failed = room < 0;
        if (room > 0) {
            failed = append(events, event) < 0;
        }
        else if (room == 0) {
            PyObject *one = PyTuple_Pack(1, trace);
            PyObject *overflow = SLOT(event, base_offsets[F_OVERFLOW]);
            PyObject *more = one == NULL || overflow == Py_None ? Py_XNewRef(one)
                                                                : PySequence_Concat(overflow, one);
            Py_XDECREF(one);
            if (more == NULL) {
                failed = 1;
            }
            else {
                Py_SETREF(SLOT(event, base_offsets[F_OVERFLOW]), more);
            }
        }
        Py_DECREF(events);
        if (failed) {
            return -1;
        }
    }
    return 0;
}

PyDoc_STRVAR(begin_doc,
"begin($module, /, traces, kind, op, target, depth=3)\n\
--\n\
\n\
ioprofiler.recording.begin in one call: the event of the class for ``kind`` and ``op``, its\n\
callsite found ``depth`` frames up from recording.begin's frame as it would be, appended to\n\
every open trace (or counted past a full one), its clock started last.");

static PyObject *
begin(PyObject *module, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (slow_begin == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "ioprofiler._speedups.install_events() was not called");
        return NULL;
    }
    Py_ssize_t given = nargs + (kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames));
    int depth_by_name = kwnames != NULL && nargs == 4 && PyTuple_GET_SIZE(kwnames) == 1 &&
                        same_str(PyTuple_GET_ITEM(kwnames, 0), str_depth);
    if (given < 4 || given > 5 || (kwnames != NULL && !depth_by_name) ||
        !PyTuple_CheckExact(args[0]) || PyTuple_GET_SIZE(args[0]) == 0) {
        return PyObject_Vectorcall(slow_begin, args, nargs, kwnames); /* it says what is wrong */
    }
    PyObject *traces = args[0], *op = args[2], *target = args[3];
    long depth = 3;
    if (given == 5 && ((depth = PyLong_AsLong(args[4])) == -1 && PyErr_Occurred())) {
        return NULL;
    }
    if (depth == LONG_MIN) { /* depth - 1 below would overflow: the pure begin decides */
        return PyObject_Vectorcall(slow_begin, args, nargs, kwnames);
    }
    EventClass *ec = class_for(args[1], op);
    if (ec == NULL || ec->type == NULL) {
        /* Another kind: the pure begin makes it. Called from here, its caller is ours, so the
         * depth counts the same. */
        return PyErr_Occurred() ? NULL : PyObject_Vectorcall(slow_begin, args, nargs, kwnames);
    }
    PyObject *origin = trace_field(PyTuple_GET_ITEM(traces, PyTuple_GET_SIZE(traces) - 1), T_START);
    if (origin == NULL) {
        return NULL;
    }
    PyObject *event = ec->type->tp_alloc(ec->type, 0);
    if (event == NULL) {
        Py_DECREF(origin);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < ec->count; i++) {
        SLOT(event, ec->offsets[i]) = Py_NewRef(ec->defaults[i]);
    }
    SLOT(event, base_offsets[F_OP]) = Py_NewRef(op);
    SLOT(event, base_offsets[F_TARGET]) = Py_NewRef(target);
    SLOT(event, base_offsets[F_ORIGIN]) = origin;
    SLOT(event, base_offsets[F_START]) = Py_NewRef(zero); /* readers elsewhere may see it */
    SLOT(event, base_offsets[F_END]) = Py_NewRef(Py_None);
    SLOT(event, base_offsets[F_OVERFLOW]) = Py_NewRef(Py_None);
    SLOT(event, base_offsets[F_SITE]) = Py_NewRef(Py_None);
    PyObject *site = site_for(depth);
    if (site == NULL) {
        Py_DECREF(event);
        return NULL;
    }
    Py_SETREF(SLOT(event, base_offsets[F_SITE]), site);
    if (append_to_traces(event, traces) < 0) {
        Py_DECREF(event);
        return NULL;
    }
    PyObject *now = perf_counter_ns();
    if (now == NULL) {
        Py_DECREF(event);
        return NULL;
    }
    Py_SETREF(SLOT(event, base_offsets[F_START]), now);
    return event;
}

PyDoc_STRVAR(called_from_doc,
"called_from($module, code, depth, count, /)\n\
--\n\
\n\
Whether one of ``count`` frames from ``sys._getframe(depth)`` on (counted from the Python\n\
function calling this; then by ``f_back``) runs ``code``: the walk a wrapper makes to learn\n\
who called it, without making a frame object for each frame it passes. False when the stack\n\
is not that deep, as ``sys._getframe`` would raise.");

static PyObject *
called_from(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyCode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "called_from(code, depth, count)");
        return NULL;
    }
    long depth = PyLong_AsLong(args[1]);
    if (depth == -1 && PyErr_Occurred()) {
        return NULL;
    }
    long count = PyLong_AsLong(args[2]);
    if (count == -1 && PyErr_Occurred()) {
        return NULL;
    }
    IFrame *f = depth < 0 ? NULL : frame_at(depth);
    for (long i = 0; f != NULL && i < count; i++) {
        if ((PyObject *)frame_code(f) == args[0]) {
            Py_RETURN_TRUE;
        }
        f = back(f);
    }
    Py_RETURN_FALSE;
}

static PyMethodDef methods[] = {
    {"called_from", (PyCFunction)(void (*)(void))called_from, METH_FASTCALL, called_from_doc},
    {"find", (PyCFunction)find, METH_O, find_doc},
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL, install_doc},
    {"forget", forget, METH_NOARGS, forget_doc},
    {"install_events", (PyCFunction)(void (*)(void))install_events, METH_FASTCALL,
     install_events_doc},
    {"begin", (PyCFunction)(void (*)(void))begin, METH_FASTCALL | METH_KEYWORDS, begin_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ioprofiler._speedups",
    "The callsite lookup without frame objects (CPython 3.10 to 3.13).", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    str_find = PyUnicode_InternFromString("find");
    str_depth = PyUnicode_InternFromString("depth");
    zero = PyLong_FromLong(0);
    if (!str_find || !str_depth || !zero) {
        return NULL;
    }
    for (int t = 0; t < TRACE_FIELDS; t++) {
        if ((trace_strs[t] = PyUnicode_InternFromString(trace_names[t])) == NULL) {
            return NULL;
        }
    }
    return PyModule_Create(&module_def);
}

#elif defined(Py_GIL_DISABLED)

/* A free-threaded build: the lookup's tables (the memos above) and the dictionaries it reads
 * with borrowed references are guarded by the GIL alone. Refused here, before a module exists,
 * the import leaves the GIL off and ioprofiler runs pure Python. */
PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyErr_SetString(PyExc_ImportError,
                    "ioprofiler._speedups needs the GIL (its tables have no locks): on a "
                    "free-threaded build ioprofiler runs pure Python");
    return NULL;
}

#else /* not a CPython whose frames it reads */

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyErr_SetString(PyExc_ImportError,
                    "ioprofiler._speedups reads CPython 3.10 to 3.13 frames only: "
                    "ioprofiler runs pure Python here");
    return NULL;
}

#endif
