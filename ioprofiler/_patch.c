/* ioprofiler._patch: a patched method whose call costs one context-variable read while no
 * trace is open.
 *
 * A method patched with wrapt's FunctionWrapper (ioprofiler's patch before this type, and still
 * its fallback) binds the wrapper to the instance on every call first (wrapt builds a
 * BoundFunctionWrapper object per call, about 3,000 machine instructions), then asks whether a
 * trace is open. On a loopback memcached get or an SQLite statement that binding was most of
 * what an idle ioprofiler cost.
 *
 * MethodPatch is the same wrapper as a method descriptor of the kind CPython calls without
 * binding (Py_TPFLAGS_METHOD_DESCRIPTOR, as plain functions are): ``client.get(key)`` calls it
 * with ``client`` as its first argument. It reads the context variable and, when no trace is
 * open, passes the arguments on to the class's own function unchanged. While a trace is open it
 * calls the wrapper as wrapt would: ``wrapper(wrapped, instance, args, kwargs)`` with
 * ``wrapped`` the function bound to ``instance``.
 *
 * Read from the class (``Client.get``) it is itself, and shows ``__wrapped__``; read from an
 * instance without a call (``f = client.get``, another tool's wrapper above it binding it, or a
 * class with its own ``__getattr__``, such as Django's CursorWrapper, where CPython binds
 * first) it is a BoundMethodPatch, which, like wrapt's bound wrapper under ioprofiler, hides
 * ``__wrapped__`` (OpenTelemetry's pymemcache wrappers skip a method that shows it) and gives
 * the function as ``__func__``. Both report the function's name, docstring, module, signature
 * and class (``isinstance(Client.get, types.FunctionType)`` holds, as it does for wrapt's
 * proxies), and pickle, copy and weakly reference as the function or bound method would.
 *
 * Calling the method with its instance passed by keyword (``Cls.method(self=obj)``) goes to the
 * function without the wrapper.
 *
 * Only the public C API is used: it builds on every CPython ioprofiler supports. The
 * pure-Python fallback is wrapt (ioprofiler.patching chooses).
 *
 * Free-threaded builds (3.13t): the module declares it does not need the GIL (see its init).
 * A MethodPatch's fields are set when it is made and never changed after; a call reads them
 * and the calling thread's own context and argument array, and every object it touches
 * besides is reached through the C API with a reference of its own (no borrowed reference
 * from a dictionary another thread could change). The module's globals are interned names
 * set once by its init.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

/* A compiled wrapper's own call (ioprofiler/_recorders.c): (wrapper, the class's function,
 * the context variable's value, the call's arguments with the instance first). */
typedef PyObject *(*fastcall_fn)(PyObject *, PyObject *, PyObject *, PyObject *const *, size_t,
                                 PyObject *);

typedef struct {
    PyObject_HEAD
    PyObject *original; /* the class's own function */
    PyObject *wrapper;  /* wrapper(wrapped, instance, args, kwargs) */
    PyObject *var;      /* ContextVar: the wrapper runs while it holds a true value; NULL: always */
    PyObject *weakreflist;
    vectorcallfunc vectorcall;
    fastcall_fn fastcall; /* the wrapper's own call, when it has one for this var; else NULL */
} MethodPatch;

typedef struct {
    PyObject_HEAD
    MethodPatch *patch;
    PyObject *self;
    PyObject *weakreflist;
    vectorcallfunc vectorcall;
} BoundMethodPatch;

static PyTypeObject MethodPatch_Type;
static PyTypeObject BoundMethodPatch_Type;

static PyObject *str_wrapped, *str_class, *str_doc, *str_module, *str_name, *str_qualname,
    *str_dict, *str_annotations;

/* ---- the call ---------------------------------------------------------------------------- */

static PyObject *
call_wrapper(MethodPatch *patch, PyObject *instance, PyObject *const *args, Py_ssize_t nargs,
             PyObject *kwnames)
{
    PyObject *bound = NULL, *positional = NULL, *kwargs = NULL, *result = NULL;

    bound = PyMethod_New(patch->original, instance);
    if (bound == NULL)
        goto done;
    positional = PyTuple_New(nargs);
    if (positional == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(positional, i, args[i]);
    }
    kwargs = PyDict_New();
    if (kwargs == NULL)
        goto done;
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nkw; i++) {
            if (PyDict_SetItem(kwargs, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0)
                goto done;
        }
    }
    {
        PyObject *stack[4] = {bound, instance, positional, kwargs};
        result = PyObject_Vectorcall(patch->wrapper, stack, 4, NULL);
    }
done:
    Py_XDECREF(bound);
    Py_XDECREF(positional);
    Py_XDECREF(kwargs);
    return result;
}

/* The context variable's value when it is true (a new reference), else NULL. A value that
 * cannot say counts as false: nothing of ours raises into the application. */
static inline PyObject *
switched_on(MethodPatch *patch)
{
    PyObject *value;
    int on;

    if (PyContextVar_Get(patch->var, NULL, &value) < 0) {
        PyErr_Clear();
        return NULL;
    }
    if (value == NULL)
        return NULL;
    on = PyObject_IsTrue(value);
    if (on <= 0) {
        PyErr_Clear();
        Py_DECREF(value);
        return NULL;
    }
    return value;
}

/* args[0] is the instance, as for a function called as a method. */
static PyObject *
patch_run(MethodPatch *patch, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *value, *result;

    if (patch->var == NULL)
        return nargs < 1 ? PyObject_Vectorcall(patch->original, args, nargsf, kwnames)
                         : call_wrapper(patch, args[0], args + 1, nargs - 1, kwnames);
    if (nargs < 1 || (value = switched_on(patch)) == NULL)
        return PyObject_Vectorcall(patch->original, args, nargsf, kwnames);
    if (patch->fastcall != NULL)
        result = patch->fastcall(patch->wrapper, patch->original, value, args, nargsf, kwnames);
    else
        result = call_wrapper(patch, args[0], args + 1, nargs - 1, kwnames);
    Py_DECREF(value);
    return result;
}

/* The wrapper's own call, when it is a compiled recorder (of the type the capsule names as its
 * context) switched by this same variable (``wrapper.active is var``): NULL otherwise, and then
 * it is called as wrapt would. */
static fastcall_fn
fastcall_of(PyObject *wrapper, PyObject *var)
{
    PyObject *capsule, *active;
    fastcall_fn fastcall = NULL;

    if (var == NULL)
        return NULL;
    capsule = PyObject_GetAttrString((PyObject *)Py_TYPE(wrapper), "_ioprofiler_fastcall");
    active = capsule == NULL ? NULL : PyObject_GetAttrString(wrapper, "active");
    if (active == var && PyCapsule_IsValid(capsule, "ioprofiler._recorders.fastcall") &&
        PyCapsule_GetContext(capsule) == (void *)Py_TYPE(wrapper))
        fastcall = (fastcall_fn)PyCapsule_GetPointer(capsule, "ioprofiler._recorders.fastcall");
    Py_XDECREF(capsule);
    Py_XDECREF(active);
    PyErr_Clear();
    return fastcall;
}

static PyObject *
patch_vectorcall(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return patch_run((MethodPatch *)self, args, nargsf, kwnames);
}

#define SMALL_STACK 8

static PyObject *
bound_vectorcall(PyObject *op, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    BoundMethodPatch *bound = (BoundMethodPatch *)op;
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    Py_ssize_t total = nargs + (kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject *result;

    if (nargsf & PY_VECTORCALL_ARGUMENTS_OFFSET) {
        /* the caller lets us borrow the slot before args[0] for the instance */
        PyObject **with_self = (PyObject **)args - 1;
        PyObject *saved = with_self[0];
        with_self[0] = bound->self;
        result = patch_run(bound->patch, with_self, nargs + 1, kwnames);
        with_self[0] = saved;
        return result;
    }
    PyObject *small[SMALL_STACK];
    PyObject **with_self = small;
    if (total + 1 > SMALL_STACK) {
        with_self = PyMem_Malloc((size_t)(total + 1) * sizeof(PyObject *));
        if (with_self == NULL)
            return PyErr_NoMemory();
    }
    with_self[0] = bound->self;
    if (total > 0)
        memcpy(with_self + 1, args, (size_t)total * sizeof(PyObject *));
    result = patch_run(bound->patch, with_self, nargs + 1, kwnames);
    if (with_self != small)
        PyMem_Free(with_self);
    return result;
}

/* ---- MethodPatch ------------------------------------------------------------------------- */

static PyObject *
patch_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"original", "wrapper", "var", NULL};
    PyObject *original, *wrapper, *var = Py_None;
    MethodPatch *self;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|O:MethodPatch", keywords, &original,
                                     &wrapper, &var))
        return NULL;
    if (!PyFunction_Check(original)) {
        PyErr_Format(PyExc_TypeError, "MethodPatch wraps a plain function, not %R", original);
        return NULL;
    }
    if (!PyCallable_Check(wrapper)) {
        PyErr_Format(PyExc_TypeError, "the wrapper must be callable, not %R", wrapper);
        return NULL;
    }
    if (var != Py_None && !PyContextVar_CheckExact(var)) {
        PyErr_Format(PyExc_TypeError, "var must be a contextvars.ContextVar or None, not %R",
                     var);
        return NULL;
    }
    self = (MethodPatch *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->original = Py_NewRef(original);
    self->wrapper = Py_NewRef(wrapper);
    self->var = var == Py_None ? NULL : Py_NewRef(var);
    self->weakreflist = NULL;
    self->vectorcall = patch_vectorcall;
    self->fastcall = fastcall_of(wrapper, self->var);
    return (PyObject *)self;
}

static int
patch_traverse(MethodPatch *self, visitproc visit, void *arg)
{
    Py_VISIT(self->original);
    Py_VISIT(self->wrapper);
    Py_VISIT(self->var);
    return 0;
}

static int
patch_clear(MethodPatch *self)
{
    Py_CLEAR(self->original);
    Py_CLEAR(self->wrapper);
    Py_CLEAR(self->var);
    return 0;
}

static void
patch_dealloc(MethodPatch *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    patch_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *
bind(PyObject *patch, PyObject *instance)
{
    BoundMethodPatch *bound = PyObject_GC_New(BoundMethodPatch, &BoundMethodPatch_Type);

    if (bound == NULL)
        return NULL;
    bound->patch = (MethodPatch *)Py_NewRef(patch);
    bound->self = Py_NewRef(instance);
    bound->weakreflist = NULL;
    bound->vectorcall = bound_vectorcall;
    PyObject_GC_Track(bound);
    return (PyObject *)bound;
}

static PyObject *
patch_descr_get(PyObject *self, PyObject *instance, PyObject *Py_UNUSED(owner))
{
    if (instance == NULL || instance == Py_None)
        return Py_NewRef(self);
    return bind(self, instance);
}

/* Is name "__wrapped__"? By address for the interned names code uses, by comparison for a
 * name built at run time (never interned here, which would keep it alive for good). */
static int
is_wrapped_name(PyObject *name)
{
    if (name == str_wrapped)
        return 1;
    return PyUnicode_Check(name) && !PyUnicode_CHECK_INTERNED(name) &&
           PyUnicode_Compare(name, str_wrapped) == 0;
}

/* Anything this type does not define is the function's (__code__, __defaults__, ...). */
static PyObject *
patch_getattro(PyObject *op, PyObject *name)
{
    PyObject *found = PyObject_GenericGetAttr(op, name);

    if (found != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return found;
    PyErr_Clear();
    return PyObject_GetAttr(((MethodPatch *)op)->original, name);
}

static int
patch_setattro(PyObject *op, PyObject *name, PyObject *value)
{
    return PyObject_SetAttr(((MethodPatch *)op)->original, name, value);
}

static PyObject *
patch_repr(PyObject *op)
{
    return PyObject_Repr(((MethodPatch *)op)->original);
}

/* Pickled and copied as the function is: by its qualified name, in its module. */
static PyObject *
patch_reduce(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return PyObject_GetAttr(((MethodPatch *)op)->original, str_qualname);
}

static PyMethodDef patch_methods[] = {
    {"__reduce__", patch_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* __doc__, __name__, ...: data descriptors of the type, so that object.__getattribute__ (as
 * pydoc uses) finds the function's and not this type's own. closure: the interned name. */
static PyObject *
patch_get_forwarded(PyObject *op, void *closure)
{
    return PyObject_GetAttr(((MethodPatch *)op)->original, (PyObject *)closure);
}

static int
patch_set_forwarded(PyObject *op, PyObject *value, void *closure)
{
    return PyObject_SetAttr(((MethodPatch *)op)->original, (PyObject *)closure, value);
}

static PyObject *
patch_get_wrapped(PyObject *op, void *Py_UNUSED(closure))
{
    return Py_NewRef(((MethodPatch *)op)->original);
}

static PyObject *
patch_get_wrapper(PyObject *op, void *Py_UNUSED(closure))
{
    return Py_NewRef(((MethodPatch *)op)->wrapper);
}

static PyObject *
patch_get_var(PyObject *op, void *Py_UNUSED(closure))
{
    MethodPatch *self = (MethodPatch *)op;
    return Py_NewRef(self->var != NULL ? self->var : Py_None);
}

/* The closures are filled in by the module's init (the interned names). */
static PyGetSetDef patch_getset[] = {
    {"__doc__", patch_get_forwarded, patch_set_forwarded, NULL, NULL},
    {"__name__", patch_get_forwarded, patch_set_forwarded, NULL, NULL},
    {"__qualname__", patch_get_forwarded, patch_set_forwarded, NULL, NULL},
    {"__module__", patch_get_forwarded, patch_set_forwarded, NULL, NULL},
    {"__dict__", patch_get_forwarded, patch_set_forwarded, NULL, NULL},
    {"__annotations__", patch_get_forwarded, patch_set_forwarded, NULL, NULL},
    {"__class__", patch_get_forwarded, NULL, NULL, NULL},
    {"__wrapped__", patch_get_wrapped, NULL, "the class's own function", NULL},
    {"_ioprofiler_wrapper", patch_get_wrapper, NULL, "the wrapper this patch calls", NULL},
    {"_ioprofiler_var", patch_get_var, NULL,
     "the ContextVar that switches the wrapper on (None: always on)", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
#define FORWARDED_GETSETS 7 /* the first entries above, closures set at init */

static PyTypeObject MethodPatch_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ioprofiler._patch.MethodPatch",
    .tp_basicsize = sizeof(MethodPatch),
    .tp_dealloc = (destructor)patch_dealloc,
    .tp_vectorcall_offset = offsetof(MethodPatch, vectorcall),
    .tp_repr = patch_repr,
    .tp_call = PyVectorcall_Call,
    .tp_getattro = patch_getattro,
    .tp_setattro = patch_setattro,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_METHOD_DESCRIPTOR |
                Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_traverse = (traverseproc)patch_traverse,
    .tp_clear = (inquiry)patch_clear,
    .tp_weaklistoffset = offsetof(MethodPatch, weakreflist),
    .tp_methods = patch_methods,
    .tp_getset = patch_getset,
    .tp_descr_get = patch_descr_get,
    .tp_new = patch_new,
};

/* ---- BoundMethodPatch -------------------------------------------------------------------- */

static int
bound_traverse(BoundMethodPatch *self, visitproc visit, void *arg)
{
    Py_VISIT(self->patch);
    Py_VISIT(self->self);
    return 0;
}

static int
bound_clear(BoundMethodPatch *self)
{
    Py_CLEAR(self->patch);
    Py_CLEAR(self->self);
    return 0;
}

static void
bound_dealloc(BoundMethodPatch *self)
{
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    bound_clear(self);
    PyObject_GC_Del(self);
}

/* Like a bound method: the rest is the patch's (and so the function's), except
 * __wrapped__, hidden (see the top of this file). */
static PyObject *
bound_getattro(PyObject *op, PyObject *name)
{
    PyObject *found;

    if (is_wrapped_name(name)) {
        PyErr_SetObject(PyExc_AttributeError, name);
        return NULL;
    }
    found = PyObject_GenericGetAttr(op, name);
    if (found != NULL || !PyErr_ExceptionMatches(PyExc_AttributeError))
        return found;
    PyErr_Clear();
    return PyObject_GetAttr((PyObject *)((BoundMethodPatch *)op)->patch, name);
}

static PyObject *
bound_get_forwarded(PyObject *op, void *closure)
{
    return PyObject_GetAttr(((BoundMethodPatch *)op)->patch->original, (PyObject *)closure);
}

static PyObject *
bound_get_class(PyObject *Py_UNUSED(op), void *Py_UNUSED(closure))
{
    return Py_NewRef((PyObject *)&PyMethod_Type);
}

/* The function, as wrapt's bound wrapper and a plain bound method give it: what
 * weakref.WeakMethod and Django's signals key a receiver by, the same installed or not. */
static PyObject *
bound_get_func(PyObject *op, void *Py_UNUSED(closure))
{
    return Py_NewRef(((BoundMethodPatch *)op)->patch->original);
}

static PyGetSetDef bound_getset[] = {
    {"__doc__", bound_get_forwarded, NULL, NULL, NULL},
    {"__name__", bound_get_forwarded, NULL, NULL, NULL},
    {"__qualname__", bound_get_forwarded, NULL, NULL, NULL},
    {"__module__", bound_get_forwarded, NULL, NULL, NULL},
    {"__class__", bound_get_class, NULL, NULL, NULL},
    {"__func__", bound_get_func, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};
#define BOUND_FORWARDED_GETSETS 4

static PyObject *
bound_repr(PyObject *op)
{
    BoundMethodPatch *self = (BoundMethodPatch *)op;
    PyObject *qualname = PyObject_GetAttr(self->patch->original, str_qualname), *text;

    if (qualname == NULL)
        return NULL;
    text = PyUnicode_FromFormat("<bound method %S of %R>", qualname, self->self);
    Py_DECREF(qualname);
    return text;
}

static PyObject *
bound_richcompare(PyObject *a, PyObject *b, int op)
{
    if ((op != Py_EQ && op != Py_NE) || !PyObject_TypeCheck(a, &BoundMethodPatch_Type) ||
        !PyObject_TypeCheck(b, &BoundMethodPatch_Type))
        Py_RETURN_NOTIMPLEMENTED;
    BoundMethodPatch *x = (BoundMethodPatch *)a, *y = (BoundMethodPatch *)b;
    int equal = x->self == y->self && x->patch == y->patch;
    return PyBool_FromLong(op == Py_EQ ? equal : !equal);
}

static Py_hash_t
bound_hash(PyObject *op)
{
    BoundMethodPatch *self = (BoundMethodPatch *)op;
    size_t x = (size_t)self->self, y = (size_t)self->patch;
    Py_hash_t h = (Py_hash_t)(((x >> 4) | (x << (8 * sizeof(size_t) - 4))) ^ (y >> 4));
    return h == -1 ? -2 : h;
}

/* BoundMethodPatch(function, instance), as types.MethodType(function, instance): what
 * weakref.WeakMethod calls to rebuild a method from its __func__ and __self__. The function's
 * patch on the instance's class, when it is still there, bound; a plain bound method once the
 * patch is gone. A MethodPatch is taken as the function too. */
static PyObject *
bound_new(PyTypeObject *Py_UNUSED(type), PyObject *args, PyObject *kwds)
{
    PyObject *function, *instance, *name, *attribute;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:BoundMethodPatch",
                                     (char *[]){"function", "instance", NULL}, &function,
                                     &instance))
        return NULL;
    if (instance == Py_None) {
        PyErr_SetString(PyExc_TypeError, "instance must not be None");
        return NULL;
    }
    if (PyObject_TypeCheck(function, &MethodPatch_Type))
        return bind(function, instance);
    if (!PyFunction_Check(function)) {
        PyErr_Format(PyExc_TypeError, "BoundMethodPatch binds a function, not %R", function);
        return NULL;
    }
    name = PyObject_GetAttr(function, str_name);
    attribute = name != NULL ? PyObject_GetAttr((PyObject *)Py_TYPE(instance), name) : NULL;
    Py_XDECREF(name);
    if (attribute == NULL)
        PyErr_Clear();
    else if (PyObject_TypeCheck(attribute, &MethodPatch_Type) &&
             ((MethodPatch *)attribute)->original == function) {
        PyObject *bound = bind(attribute, instance);
        Py_DECREF(attribute);
        return bound;
    }
    Py_XDECREF(attribute);
    return PyMethod_New(function, instance);
}

/* Pickled and copied as a bound method is: getattr(instance, name). */
static PyObject *
bound_reduce(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    BoundMethodPatch *self = (BoundMethodPatch *)op;
    PyObject *builtins, *getattr_function, *name;

    /* A reference of our own, not one borrowed from the builtins' dictionary. */
    builtins = PyImport_ImportModule("builtins");
    getattr_function = builtins != NULL ? PyObject_GetAttrString(builtins, "getattr") : NULL;
    Py_XDECREF(builtins);
    if (getattr_function == NULL)
        return NULL;
    name = PyObject_GetAttr(self->patch->original, str_name);
    if (name == NULL) {
        Py_DECREF(getattr_function);
        return NULL;
    }
    return Py_BuildValue("N(ON)", getattr_function, self->self, name);
}

static PyMethodDef bound_methods[] = {
    {"__reduce__", bound_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef bound_members[] = {
    {"__self__", T_OBJECT, offsetof(BoundMethodPatch, self), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject BoundMethodPatch_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "ioprofiler._patch.BoundMethodPatch",
    .tp_basicsize = sizeof(BoundMethodPatch),
    .tp_dealloc = (destructor)bound_dealloc,
    .tp_vectorcall_offset = offsetof(BoundMethodPatch, vectorcall),
    .tp_repr = bound_repr,
    .tp_hash = bound_hash,
    .tp_call = PyVectorcall_Call,
    .tp_getattro = bound_getattro,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_traverse = (traverseproc)bound_traverse,
    .tp_clear = (inquiry)bound_clear,
    .tp_richcompare = bound_richcompare,
    .tp_weaklistoffset = offsetof(BoundMethodPatch, weakreflist),
    .tp_methods = bound_methods,
    .tp_members = bound_members,
    .tp_getset = bound_getset,
    .tp_new = bound_new,
};

/* ---- the module -------------------------------------------------------------------------- */

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, .m_name = "ioprofiler._patch",
    .m_doc = "MethodPatch: a patched method that costs one context-variable read while idle.",
    .m_size = -1,
};

static int
intern(PyObject **slot, const char *text)
{
    *slot = PyUnicode_InternFromString(text);
    return *slot == NULL ? -1 : 0;
}

PyMODINIT_FUNC
PyInit__patch(void)
{
    PyObject *module;

    if (intern(&str_wrapped, "__wrapped__") < 0 || intern(&str_class, "__class__") < 0 ||
        intern(&str_doc, "__doc__") < 0 || intern(&str_module, "__module__") < 0 ||
        intern(&str_name, "__name__") < 0 || intern(&str_qualname, "__qualname__") < 0 ||
        intern(&str_dict, "__dict__") < 0 || intern(&str_annotations, "__annotations__") < 0)
        return NULL;
    PyObject *forwarded[] = {str_doc, str_name, str_qualname, str_module,
                             str_dict, str_annotations, str_class};
    for (int i = 0; i < FORWARDED_GETSETS; i++) {
        patch_getset[i].closure = forwarded[i];
        if (i < BOUND_FORWARDED_GETSETS)
            bound_getset[i].closure = forwarded[i];
    }
    if (PyType_Ready(&MethodPatch_Type) < 0 || PyType_Ready(&BoundMethodPatch_Type) < 0)
        return NULL;
    module = PyModule_Create(&module_def);
    if (module == NULL)
        return NULL;
#ifdef Py_GIL_DISABLED
    /* Py_mod_gil for a module made by PyModule_Create: safe without the GIL (the top of this
     * file says why), so importing it leaves a free-threaded build free-threaded. */
    if (PyUnstable_Module_SetGIL(module, Py_MOD_GIL_NOT_USED) < 0) {
        Py_DECREF(module);
        return NULL;
    }
#endif
    if (PyModule_AddObjectRef(module, "MethodPatch", (PyObject *)&MethodPatch_Type) < 0 ||
        PyModule_AddObjectRef(module, "BoundMethodPatch", (PyObject *)&BoundMethodPatch_Type) <
            0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
