/* typed.c - placeholder until the C API it binds lands. */
#include "ext.h"

int ext_typed_init_type(PyObject *m, ext_state *st)
{
    return 0;
}
