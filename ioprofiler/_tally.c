/* ioprofiler._tally: one pass over a request's kept events, adding up what the OpenTelemetry
 * exporter puts on the request's span, compiled.
 *
 * The exporter runs on the request's thread, after the response: its pass over some thirty
 * events was most of what it cost a request in Python (about ten attribute reads an event,
 * of three event classes, so the interpreter's specialised loads keep missing). Here the
 * fields every event class keeps in slots are read by their offsets, learnt once from the
 * classes' member descriptors (ioprofiler.export.otel calls describe()); the fields an event
 * may keep in its __dict__ (kind, error, counts) are read as Python reads them.
 *
 *   count_io(events, per_kind, statements) -> (io_ns, errors, hits, misses)
 *
 * IOCounts.of in ioprofiler/export/otel.py is the reference: it runs when this module is
 * absent, and whenever count_io raises (an event of a shape it does not read: a field that is
 * not an int, a slot left unset), on fresh dictionaries, so the answer is always the
 * reference's. tests/test_otel_tally.py holds the two to the same counts.
 *
 * Only the public C API is used. The events are finished when an exporter reads them and the
 * dictionaries are the caller's own, so nothing here needs the GIL: on a free-threaded build
 * the module says so (Py_mod_gil), and importing it leaves the GIL off.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "_slots.h" /* slot_offset */

/* The classes whose slots are read by offset, and those offsets. */
enum { F_OP, F_TARGET, F_START, F_END, BASE_FIELDS };
static const char *const base_names[BASE_FIELDS] = {"op", "_target", "start_ns", "end_ns"};
static Py_ssize_t base_offsets[BASE_FIELDS];

static PyTypeObject *statement_type = NULL;       /* Statement: its "statement" slot */
static PyTypeObject *connection_op_type = NULL;   /* ConnectionOp: the base fields only */
static PyTypeObject *cache_call_type = NULL;      /* CacheCall: "keys", "hit", "missed_keys" */
static Py_ssize_t statement_offset, keys_offset, hit_offset, missed_offset;

static PyObject *connection_ops = NULL; /* frozenset of the ops that are not calls */
static PyObject *pool_wait = NULL;      /* "pool wait": not I/O, not counted */
static PyObject *kind_db = NULL;        /* "db" */
static PyObject *str_op, *str_target, *str_start, *str_end, *str_kind, *str_statement, *str_hit,
    *str_keys, *str_missed, *str_counts, *str_error, *str_hit_count, *str_miss_count;

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

/* event.<name>, a new reference: from its slot when one of the classes read by offset has it,
 * else as Python reads it (an unset slot raises AttributeError, as Python's read does). */
static inline PyObject *
field(PyObject *event, Py_ssize_t offset, PyObject *name)
{
    if (offset >= 0) {
        PyObject *value = SLOT(event, offset);
        if (value != NULL) {
            return Py_NewRef(value);
        }
    }
    return PyObject_GetAttr(event, name);
}

/* value as a C integer; -1 with an exception set when it is not an int or too large. */
static inline int
as_long_long(PyObject *value, long long *out)
{
    if (!PyLong_Check(value)) {
        PyErr_SetString(PyExc_TypeError, "an event's time or count is not an int");
        return -1;
    }
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (overflow) {
        PyErr_SetString(PyExc_OverflowError, "an event's time or count is too large");
        return -1;
    }
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

/* counts[key] += n */
static int
add_count(PyObject *counts, PyObject *key, long long n)
{
    PyObject *old = PyDict_GetItemWithError(counts, key); /* borrowed */
    long long before = 0;
    if (old == NULL) {
        if (PyErr_Occurred()) {
            return -1;
        }
    }
    else if (as_long_long(old, &before) < 0) {
        return -1;
    }
    PyObject *new = PyLong_FromLongLong(before + n);
    if (new == NULL) {
        return -1;
    }
    int result = PyDict_SetItem(counts, key, new);
    Py_DECREF(new);
    return result;
}

/* Counts by the identity of one or two objects, in the order first seen, added to a
 * dictionary when full and at the end: most of a request's statements are a few texts (the
 * same str objects, from SQLAlchemy's compiled cache) on a few shards, so the dictionary is
 * touched once per distinct pair rather than once per event. Equal keys that are different
 * objects merge in the dictionary, which keeps the order it first saw them in: the same
 * dictionary, in the same order, as counting event by event. */
#define TABLE_SIZE 16

typedef struct {
    PyObject *first, *second; /* strong references; second is NULL for one-object keys */
    long long n;
} Entry;

typedef struct {
    PyObject *counts; /* the dictionary: keyed by (first, second), or first alone */
    Py_ssize_t used;
    Entry entries[TABLE_SIZE];
} Table;

/* Add the table's counts to its dictionary (unless failed is set: an exception is) and empty
 * it: 0, or -1 with an exception set. */
static int
flush(Table *table, int failed)
{
    for (Py_ssize_t i = 0; i < table->used; i++) {
        Entry *entry = &table->entries[i];
        if (!failed) {
            PyObject *key = entry->second == NULL ? Py_NewRef(entry->first)
                                                  : PyTuple_Pack(2, entry->first, entry->second);
            failed = key == NULL || add_count(table->counts, key, entry->n) < 0;
            Py_XDECREF(key);
        }
        Py_DECREF(entry->first);
        Py_XDECREF(entry->second);
    }
    table->used = 0;
    return failed ? -1 : 0;
}

/* table[(first, second)] += 1 */
static inline int
count_one(Table *table, PyObject *first, PyObject *second)
{
    for (Py_ssize_t i = 0; i < table->used; i++) {
        Entry *entry = &table->entries[i];
        if (entry->first == first && entry->second == second) {
            entry->n++;
            return 0;
        }
    }
    if (table->used == TABLE_SIZE && flush(table, 0) < 0) {
        return -1;
    }
    Entry *entry = &table->entries[table->used++];
    entry->first = Py_NewRef(first);
    entry->second = Py_XNewRef(second);
    entry->n = 1;
    return 0;
}

/* "len(x) if x else 0" */
static inline Py_ssize_t
length_if_any(PyObject *value)
{
    int truth = PyObject_IsTrue(value);
    return truth < 0 ? -1 : truth ? PyObject_Size(value) : 0;
}

/* "x or 0" for an int count read through a property (hit_count, miss_count). */
static inline int
count_or_zero(PyObject *event, PyObject *name, long long *total)
{
    PyObject *value = PyObject_GetAttr(event, name);
    if (value == NULL) {
        return -1;
    }
    long long n = 0;
    int result = value == Py_None ? 0 : as_long_long(value, &n);
    Py_DECREF(value);
    *total += n;
    return result;
}

/* A cache read's hits and misses, as Event.hit_count and miss_count tell them. */
static int
add_hits(PyObject *event, int is_cache_call, long long *hits, long long *misses)
{
    if (is_cache_call) {
        PyObject *counts = PyObject_GetAttr(event, str_counts);
        if (counts == NULL) {
            return -1;
        }
        int counted = counts != Py_None;
        Py_DECREF(counts);
        if (!counted) {
            PyObject *missed = field(event, missed_offset, str_missed);
            if (missed == NULL) {
                return -1;
            }
            Py_ssize_t missing = length_if_any(missed);
            Py_DECREF(missed);
            PyObject *keys = missing < 0 ? NULL : field(event, keys_offset, str_keys);
            if (keys == NULL) {
                return -1;
            }
            Py_ssize_t found = PyObject_Size(keys);
            Py_DECREF(keys);
            if (found < 0) {
                return -1;
            }
            *misses += missing;
            *hits += found - missing;
            return 0;
        }
    }
    if (count_or_zero(event, str_miss_count, misses) < 0 ||
        count_or_zero(event, str_hit_count, hits) < 0) {
        return -1;
    }
    return 0;
}

/* One event added up; 0, or -1 with an exception set. */
static int
count_event(PyObject *event, Table *per_kind, Table *statements, long long *io_ns,
            long long *errors, long long *hits, long long *misses)
{
    PyTypeObject *type = Py_TYPE(event);
    int is_statement = type == statement_type, is_cache_call = type == cache_call_type;
    int known = is_statement || is_cache_call || type == connection_op_type;
    int failed = -1;
    PyObject *kind = NULL, *target = NULL, *text = NULL, *hit = NULL;
    PyObject *end = NULL, *start = NULL, *error = NULL;

    PyObject *op = field(event, known ? base_offsets[F_OP] : -1, str_op);
    if (op == NULL) {
        return -1;
    }
    int connection_op = PySet_Contains(connection_ops, op);
    if (connection_op < 0) {
        goto done;
    }
    if (connection_op) {
        int is_pool_wait = PyObject_RichCompareBool(op, pool_wait, Py_EQ);
        if (is_pool_wait != 0) {
            failed = is_pool_wait < 0 ? -1 : 0;
            goto done;
        }
    }
    else {
        if ((kind = PyObject_GetAttr(event, str_kind)) == NULL) {
            goto done;
        }
        int is_db = PyObject_RichCompareBool(kind, kind_db, Py_EQ);
        if (is_db < 0) {
            goto done;
        }
        if (is_db) {
            if ((target = field(event, known ? base_offsets[F_TARGET] : -1, str_target)) == NULL ||
                (text = field(event, is_statement ? statement_offset : -1, str_statement)) ==
                    NULL ||
                count_one(statements, target, text) < 0) {
                goto done;
            }
        }
        else {
            if (count_one(per_kind, kind, NULL) < 0 ||
                (hit = field(event, is_cache_call ? hit_offset : -1, str_hit)) == NULL) {
                goto done;
            }
            if (hit != Py_None && add_hits(event, is_cache_call, hits, misses) < 0) {
                goto done;
            }
        }
    }
    if ((end = field(event, known ? base_offsets[F_END] : -1, str_end)) == NULL) {
        goto done;
    }
    if (end != Py_None) {
        long long end_ns, start_ns;
        if ((start = field(event, known ? base_offsets[F_START] : -1, str_start)) == NULL ||
            as_long_long(end, &end_ns) < 0 || as_long_long(start, &start_ns) < 0) {
            goto done;
        }
        *io_ns += end_ns - start_ns;
    }
    if ((error = PyObject_GetAttr(event, str_error)) == NULL) {
        goto done;
    }
    *errors += error != Py_None;
    failed = 0;
done:
    Py_DECREF(op);
    Py_XDECREF(kind);
    Py_XDECREF(target);
    Py_XDECREF(text);
    Py_XDECREF(hit);
    Py_XDECREF(end);
    Py_XDECREF(start);
    Py_XDECREF(error);
    return failed;
}

PyDoc_STRVAR(count_io_doc,
             "count_io(events, per_kind, statements) -> (io_ns, errors, hits, misses)\n\n"
             "IOCounts.of's pass over a trace's kept events (ioprofiler/export/otel.py): fills\n"
             "per_kind (calls per kind other than db) and statements (db statements per\n"
             "(target, text)), and returns the totals. Raises on an event it cannot read as\n"
             "the reference does; the caller then runs the reference on fresh dictionaries.");

static PyObject *
count_io(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 || !PyList_CheckExact(args[0]) || !PyDict_CheckExact(args[1]) ||
        !PyDict_CheckExact(args[2])) {
        PyErr_SetString(PyExc_TypeError, "count_io(events: list, per_kind: dict, statements: dict)");
        return NULL;
    }
    if (statement_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "count_io() before describe()");
        return NULL;
    }
    PyObject *events = args[0];
    Table per_kind = {.counts = args[1], .used = 0}, statements = {.counts = args[2], .used = 0};
    long long io_ns = 0, errors = 0, hits = 0, misses = 0;
    int failed = 0;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(events) && !failed; i++) {
        PyObject *event = Py_NewRef(PyList_GET_ITEM(events, i));
        failed = count_event(event, &per_kind, &statements, &io_ns, &errors, &hits, &misses);
        Py_DECREF(event);
    }
    failed = flush(&per_kind, failed) < 0 || failed;
    failed = flush(&statements, failed) < 0 || failed;
    if (failed) {
        return NULL;
    }
    return Py_BuildValue("(LLLL)", io_ns, errors, hits, misses);
}

PyDoc_STRVAR(describe_doc,
             "describe(event, statement, connection_op, cache_call, connection_ops, pool_wait, "
             "db)\n\n"
             "The event classes whose slots count_io reads by offset, the ops that are not\n"
             "calls, the pool-wait op and the database kind (ioprofiler.event's).");

static PyObject *
describe(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 7 || !PyType_Check(args[0]) || !PyType_Check(args[1]) ||
        !PyType_Check(args[2]) || !PyType_Check(args[3]) || !PyFrozenSet_CheckExact(args[4]) ||
        !PyUnicode_CheckExact(args[5]) || !PyUnicode_CheckExact(args[6])) {
        PyErr_SetString(PyExc_TypeError, "describe(Event, Statement, ConnectionOp, CacheCall, "
                                         "connection_ops: frozenset, pool_wait: str, db: str)");
        return NULL;
    }
    PyTypeObject *event = (PyTypeObject *)args[0];
    for (int i = 1; i <= 3; i++) {
        if (!PyType_IsSubtype((PyTypeObject *)args[i], event)) {
            PyErr_SetString(PyExc_TypeError, "describe(): the classes must be Event's");
            return NULL;
        }
    }
    Py_ssize_t base[BASE_FIELDS];
    for (int f = 0; f < BASE_FIELDS; f++) {
        if ((base[f] = slot_offset(event, base_names[f], 0)) < 0) {
            return NULL;
        }
    }
    Py_ssize_t statement, keys, hit, missed;
    if ((statement = slot_offset((PyTypeObject *)args[1], "statement", 0)) < 0 ||
        (keys = slot_offset((PyTypeObject *)args[3], "keys", 0)) < 0 ||
        (hit = slot_offset((PyTypeObject *)args[3], "hit", 0)) < 0 ||
        (missed = slot_offset((PyTypeObject *)args[3], "missed_keys", 0)) < 0) {
        return NULL;
    }
    memcpy(base_offsets, base, sizeof base);
    statement_offset = statement;
    keys_offset = keys;
    hit_offset = hit;
    missed_offset = missed;
    Py_XSETREF(statement_type, (PyTypeObject *)Py_NewRef(args[1]));
    Py_XSETREF(connection_op_type, (PyTypeObject *)Py_NewRef(args[2]));
    Py_XSETREF(cache_call_type, (PyTypeObject *)Py_NewRef(args[3]));
    Py_XSETREF(connection_ops, Py_NewRef(args[4]));
    Py_XSETREF(pool_wait, Py_NewRef(args[5]));
    Py_XSETREF(kind_db, Py_NewRef(args[6]));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"count_io", (PyCFunction)(void (*)(void))count_io, METH_FASTCALL, count_io_doc},
    {"describe", (PyCFunction)(void (*)(void))describe, METH_FASTCALL, describe_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, .m_name = "ioprofiler._tally",
    .m_doc = "The OpenTelemetry exporter's pass over a request's events, compiled.",
    .m_size = -1, .m_methods = methods,
};

PyMODINIT_FUNC
PyInit__tally(void)
{
    struct {
        PyObject **str;
        const char *text;
    } names[] = {
        {&str_op, "op"},           {&str_target, "_target"},       {&str_start, "start_ns"},
        {&str_end, "end_ns"},      {&str_kind, "kind"},            {&str_statement, "statement"},
        {&str_hit, "hit"},         {&str_keys, "keys"},            {&str_missed, "missed_keys"},
        {&str_counts, "counts"},   {&str_error, "error"},          {&str_hit_count, "hit_count"},
        {&str_miss_count, "miss_count"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if ((*names[i].str = PyUnicode_InternFromString(names[i].text)) == NULL) {
            return NULL;
        }
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
#ifdef Py_GIL_DISABLED
    /* Py_mod_gil for a module made by PyModule_Create: safe without the GIL (the top of this
     * file says why), so importing it leaves a free-threaded build free-threaded. */
    if (PyUnstable_Module_SetGIL(module, Py_MOD_GIL_NOT_USED) < 0) {
        Py_DECREF(module);
        return NULL;
    }
#endif
    return module;
}
