/* ioprofiler._speedups: the callsite lookup without frame objects.
 *
 * ioprofiler.callsite finds the application's frame that made an I/O call by walking
 * ``frame.f_back`` from the library frame that called the wrapper. On CPython 3.11 and 3.12
 * every ``f_back`` read of a frame nobody has looked at yet creates its frame object (the
 * interpreter keeps frames in its own struct, ``_PyInterpreterFrame``, and makes the object on
 * demand), and a SQLAlchemy statement runs about six such frames above the wrapper.
 *
 * This module walks the interpreter's frames themselves, the way ``sys._getframe`` and
 * ``frame.f_back`` link them (incomplete frames skipped: frames still setting up, and 3.12's
 * C-stack shim frames), reading each frame's code object and, for the answer, its line as
 * ``frame.f_lineno`` computes it. Deciding "library or application?" and remembering the
 * chains seen stay in ioprofiler.callsite's dictionaries: this module only reads them, and
 * hands anything it has not seen decided to the pure-Python lookup, so both give the same
 * answer. See ``install`` and ``find`` below.
 *
 * It reads CPython's internal frame layout, which differs between minor versions: it is built
 * for CPython 3.11 and 3.12 only. On any other interpreter the module refuses to import and
 * ioprofiler.callsite stays pure Python.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if !defined(PYPY_VERSION) && !defined(Py_GIL_DISABLED) && PY_VERSION_HEX >= 0x030B0000 && \
    PY_VERSION_HEX < 0x030D0000
#define IOP_SUPPORTED 1
#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#endif
#include "internal/pycore_frame.h"
#else
#define IOP_SUPPORTED 0
#endif

#if IOP_SUPPORTED

typedef _PyInterpreterFrame IFrame;

/* Set by install(): callsite's dictionaries and its pure-Python fallbacks (strong refs). */
static PyObject *hints_dict = NULL;  /* id(entry code) -> (entry code, (chain, ...)) */
static PyObject *known_dict = NULL;  /* id(code) -> (code, is library?, sites by line, by offset) */
static PyObject *slow_find = NULL;   /* the pure-Python find(depth) */
static PyObject *parent_frame = NULL; /* () -> the parent greenlet's frame, or None */

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

/* sys._getframe(depth) counted from the Python function calling us (C calls have no frame). */
static IFrame *
frame_at(long depth)
{
    IFrame *f = PyThreadState_Get()->cframe->current_frame;
    while (f != NULL && depth > 0) {
        f = first_complete(f->previous);
        --depth;
    }
    return f;
}

/* Outcomes of a walk besides an answer. */
#define ASK_PYTHON ((PyObject *)1) /* something not decided yet: the pure path decides */
#define STACK_ENDED ((PyObject *)2) /* every frame a library's, to the end of this stack */
#define IS_LIBRARY ((PyObject *)3)  /* this frame is a library's: look further */

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

/* known[id(code)]: a borrowed (code, is library?, sites by line, sites by offset) tuple, or
 * ASK_PYTHON, or NULL with an exception set. */
static PyObject *
decision(PyCodeObject *code, int *is_library)
{
    PyObject *known = by_id(known_dict, code);
    if (known == NULL) {
        return PyErr_Occurred() ? NULL : ASK_PYTHON;
    }
    if (!PyTuple_CheckExact(known) || PyTuple_GET_SIZE(known) != 4 ||
        !PyDict_CheckExact(PyTuple_GET_ITEM(known, 2)) ||
        !PyDict_CheckExact(PyTuple_GET_ITEM(known, 3))) {
        return ASK_PYTHON;
    }
    int flag = PyObject_IsTrue(PyTuple_GET_ITEM(known, 1));
    if (flag < 0) {
        return NULL;
    }
    *is_library = flag;
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
 * table walk is done once per instruction offset: the sites by offset remember it. */
static PyObject *
site_of(PyObject *known, IFrame *f)
{
    PyFrameObject *obj = f->frame_obj;
    if (obj != NULL && obj->f_lineno != 0) {
        return site_at_line(known, obj->f_lineno);
    }
    PyObject *by_offset = PyTuple_GET_ITEM(known, 3);
    int offset = _PyInterpreterFrame_LASTI(f);
    PyObject *key = PyLong_FromLong(offset);
    if (key == NULL) {
        return NULL;
    }
    PyObject *site = PyDict_GetItemWithError(by_offset, key);
    if (site != NULL || PyErr_Occurred()) {
        Py_XINCREF(site);
        Py_DECREF(key);
        return site;
    }
    Py_INCREF(known);
    Py_INCREF(by_offset);
    site = site_at_line(known, PyCode_Addr2Line(f->f_code, offset * (int)sizeof(_Py_CODEUNIT)));
    if (site != NULL && site != ASK_PYTHON && PyDict_SetItem(by_offset, key, site) < 0) {
        Py_CLEAR(site);
    }
    Py_DECREF(by_offset);
    Py_DECREF(known);
    Py_DECREF(key);
    return site;
}

/* f's site when f is the application's frame, else IS_LIBRARY, ASK_PYTHON, or NULL. */
static PyObject *
answer(IFrame *f)
{
    int is_library;
    PyObject *known = decision(f->f_code, &is_library);
    if (known == NULL || known == ASK_PYTHON) {
        return known;
    }
    return is_library ? IS_LIBRARY : site_of(known, f);
}

/* callsite._walk on one stack: the first application frame's site from f on. */
static PyObject *
walk(IFrame *f)
{
    for (; f != NULL; f = back(f)) {
        PyObject *site = answer(f);
        if (site != IS_LIBRARY) {
            return site;
        }
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
        while (i < length && f != NULL && (PyObject *)f->f_code == PyTuple_GET_ITEM(chain, i)) {
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
    PyObject *hint = by_id(hints_dict, entry->f_code);
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
    IFrame *entry = depth < 0 ? NULL : frame_at(depth);
    if (entry == NULL) {
        return ask_python(depth_obj);
    }
    PyObject *site = match_hints(entry);
    if (site == ASK_PYTHON) {
        site = walk(entry);
    }
    if (site != STACK_ENDED) {
        return site == ASK_PYTHON ? ask_python(depth_obj) : site;
    }
    /* A greenlet's stack ended (SQLAlchemy's asyncio engines run the statement in one):
     * the walk goes on in the frame that switched to it, once. */
    PyObject *parent = PyObject_CallNoArgs(parent_frame);
    if (parent == NULL) {
        return NULL;
    }
    if (parent == Py_None) {
        return parent;
    }
    if (!PyFrame_Check(parent)) {
        Py_DECREF(parent);
        return ask_python(depth_obj);
    }
    site = walk(((PyFrameObject *)parent)->f_frame);
    Py_DECREF(parent);
    if (site == STACK_ENDED) {
        Py_RETURN_NONE;
    }
    return site == ASK_PYTHON ? ask_python(depth_obj) : site;
}

PyDoc_STRVAR(install_doc,
"install(hints, known, slow_find, parent_frame) -> None\n\
\n\
Give ``find`` ioprofiler.callsite's dictionaries (read, never written but for a line's\n\
site), its pure-Python ``find(depth)`` for anything not decided yet, and the function that\n\
returns the parent greenlet's frame (or None).");

static PyObject *
install(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "install() takes 4 arguments");
        return NULL;
    }
    if (!PyDict_CheckExact(args[0]) || !PyDict_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "install(): hints and known must be dicts");
        return NULL;
    }
    if (!PyCallable_Check(args[2]) || !PyCallable_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "install(): slow_find and parent_frame must be callable");
        return NULL;
    }
    Py_XSETREF(hints_dict, Py_NewRef(args[0]));
    Py_XSETREF(known_dict, Py_NewRef(args[1]));
    Py_XSETREF(slow_find, Py_NewRef(args[2]));
    Py_XSETREF(parent_frame, Py_NewRef(args[3]));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"find", (PyCFunction)find, METH_O, find_doc},
    {"install", (PyCFunction)(void (*)(void))install, METH_FASTCALL, install_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "ioprofiler._speedups",
    "The callsite lookup without frame objects (CPython 3.11 and 3.12).", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module_def);
}

#else /* not CPython 3.11 or 3.12 */

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyErr_SetString(PyExc_ImportError,
                    "ioprofiler._speedups reads CPython 3.11 and 3.12 frames only: "
                    "ioprofiler runs pure Python here");
    return NULL;
}

#endif
