/*
 * module.c - the shmkit._shmkit module: multi-phase init and the module
 * state. Module exec only registers what the other files define: the
 * exceptions and constants (common.c), the functions (functions.c) and
 * each type. It is the top of the extension: nothing calls into it.
 */
#include "ext.h"

static int mod_exec(PyObject *m)
{
    ext_state *st = ext_state_of_module(m);

    if (ext_common_init(m, st) < 0 || ext_functions_add(m) < 0)
        return -1;
    if (ext_mapping_init_type(m, st) < 0)
        return -1;
    if (ext_list_init_type(m, st) < 0)
        return -1;
    if (ext_sync_init_type(m, st) < 0)
        return -1;
    if (ext_typed_init_type(m, st) < 0)
        return -1;
    if (ext_manager_init_type(m, st) < 0)
        return -1;
    if (ext_queue_init_type(m, st) < 0)
        return -1;
    return 0;
}

static int mod_traverse(PyObject *m, visitproc visit, void *arg)
{
    ext_state *st = ext_state_of_module(m);

    Py_VISIT(st->mapping_type);
    Py_VISIT(st->list_type);
    Py_VISIT(st->lock_type);
    Py_VISIT(st->lock_gate_type);
    Py_VISIT(st->lock_entry_type);
    Py_VISIT(st->typed_type);
    Py_VISIT(st->str_value);
    Py_VISIT(st->typed_value_descr);
    Py_VISIT(st->queue_type);
    Py_VISIT(st->queue_slot_type);
    Py_VISIT(st->Error);
    Py_VISIT(st->CorruptError);
    Py_VISIT(st->OwnerDeadError);
    Py_VISIT(st->NotRecoverableError);
    Py_VISIT(st->ItemTypeError);
    Py_VISIT(st->ItemRangeError);
    return 0;
}

static int mod_clear(PyObject *m)
{
    ext_state *st = ext_state_of_module(m);

    Py_CLEAR(st->mapping_type);
    Py_CLEAR(st->list_type);
    Py_CLEAR(st->lock_type);
    Py_CLEAR(st->lock_gate_type);
    Py_CLEAR(st->lock_entry_type);
    Py_CLEAR(st->typed_type);
    Py_CLEAR(st->str_value);
    Py_CLEAR(st->typed_value_descr);
    st->value_fast_type = NULL;
    Py_CLEAR(st->queue_type);
    Py_CLEAR(st->queue_slot_type);
    Py_CLEAR(st->Error);
    Py_CLEAR(st->CorruptError);
    Py_CLEAR(st->OwnerDeadError);
    Py_CLEAR(st->NotRecoverableError);
    Py_CLEAR(st->ItemTypeError);
    Py_CLEAR(st->ItemRangeError);
    return 0;
}

static void mod_free(void *m)
{
    mod_clear((PyObject *)m);
}

static PyModuleDef_Slot mod_slots[] = {
    {Py_mod_exec, mod_exec},
    {0, NULL}
};

static PyModuleDef ext_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmkit._shmkit",
    .m_doc = "C core of shmkit: blocks, ShareableList, locks, Value/Array.",
    .m_size = sizeof(ext_state),
    .m_slots = mod_slots,
    .m_traverse = mod_traverse,
    .m_clear = mod_clear,
    .m_free = mod_free,
};

PyMODINIT_FUNC PyInit__shmkit(void)
{
    return PyModuleDef_Init(&ext_module_def);
}
