/* The one helper the compiled modules share (included by _speedups.c and _tally.c): where an
 * event class keeps a field, from the member descriptor CPython made for its __slots__. */
#ifndef IOPROFILER_SLOTS_H
#define IOPROFILER_SLOTS_H

#include <Python.h>
#include <structmember.h> /* PyMemberDescrObject, T_OBJECT_EX, READONLY */

/* The offset of cls's object slot called name (a writable one, when writable is set), or -1
 * with an exception set. */
static Py_ssize_t
slot_offset(PyTypeObject *cls, const char *name, int writable)
{
    PyObject *descr = PyObject_GetAttrString((PyObject *)cls, name);
    if (descr == NULL) {
        return -1;
    }
    Py_ssize_t offset = -1;
    if (Py_IS_TYPE(descr, &PyMemberDescr_Type)) {
        PyMemberDef *member = ((PyMemberDescrObject *)descr)->d_member;
        if (member->type == T_OBJECT_EX && !(writable && (member->flags & READONLY))) {
            offset = member->offset;
        }
    }
    Py_DECREF(descr);
    if (offset < 0) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a%s slot", cls->tp_name, name,
                     writable ? " writable" : "n object");
    }
    return offset;
}

#endif
