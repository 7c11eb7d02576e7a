/*
 * error.c - error codes, their names and messages, and the per-thread and
 * per-handle detailed messages.
 *
 * System errors are -errno and take their names from the C library;
 * shmkit's own codes are listed once, in the table below.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "os.h"

struct shmkit_errdef {
    int code;
    const char *name;
    const char *msg;
};

static const struct shmkit_errdef shmkit_errors[] = {
    {SHMKIT_ENOTREG, "SHMKIT_ENOTREG",
     "not a shared memory object (a FIFO, directory or device is at that name)"},
    {SHMKIT_EOWNER, "SHMKIT_EOWNER", "object is owned by another user"},
    {SHMKIT_ECORRUPT, "SHMKIT_ECORRUPT", "corrupt or hostile layout in the block"},
    {SHMKIT_ESTORAGE, "SHMKIT_ESTORAGE", "exceeds available storage"},
    {SHMKIT_EKIND, "SHMKIT_EKIND", "block is not of the expected kind"},
    {SHMKIT_EVERSION, "SHMKIT_EVERSION", "unsupported layout version"},
    {SHMKIT_EOWNERDEAD, "SHMKIT_EOWNERDEAD",
     "lock acquired, but its previous owner died holding it"},
    {SHMKIT_ENOTRECOVERABLE, "SHMKIT_ENOTRECOVERABLE",
     "lock is not recoverable: an owner died and the state was never repaired"},
    {SHMKIT_ELOCKHELD, "SHMKIT_ELOCKHELD",
     "this process holds a lock inside the block"},
    {SHMKIT_ESHRINK, "SHMKIT_ESHRINK",
     "shrinking a shared block must be asked for explicitly"},
    {SHMKIT_ETYPE, "SHMKIT_ETYPE", "unknown or unsupported type"},
    {SHMKIT_ENAMESPACE, "SHMKIT_ENAMESPACE",
     "lock shared across PID namespaces"},
    {SHMKIT_EPROTO, "SHMKIT_EPROTO", "malformed message"},
    {SHMKIT_EAUTH, "SHMKIT_EAUTH", "authentication refused"},
    {SHMKIT_ETRUNCATED, "SHMKIT_ETRUNCATED",
     "block is smaller than its layout requires"},
    {SHMKIT_EINDEX, "SHMKIT_EINDEX", "index out of range"},
    {SHMKIT_ENOTFOUND, "SHMKIT_ENOTFOUND", "value not found"},
    {SHMKIT_EEMPTY, "SHMKIT_EEMPTY", "object has size 0"},
    {SHMKIT_ETOOMANYLOCKS, "SHMKIT_ETOOMANYLOCKS",
     "this thread holds too many robust locks"},
    {SHMKIT_ENOTOWNER, "SHMKIT_ENOTOWNER", "lock is not held by this thread"},
    {SHMKIT_ETRACKER, "SHMKIT_ETRACKER", "lifetime tracker is unavailable"},
    {SHMKIT_ESHAPE, "SHMKIT_ESHAPE", "bad shape or number of dimensions"},
    {SHMKIT_EBUSYNAME, "SHMKIT_EBUSYNAME",
     "no free generated name found after many tries"},
    {SHMKIT_ECLOSED, "SHMKIT_ECLOSED", "already closed"},
};

_Static_assert(sizeof shmkit_errors / sizeof shmkit_errors[0] ==
                   (size_t)(SHMKIT_EBASE - SHMKIT_ELAST),
               "every SHMKIT_E code has exactly one table entry");

static const struct shmkit_errdef *shmkit_errdef(int code)
{
    if (code >= SHMKIT_EBASE || code < SHMKIT_ELAST)
        return NULL;
    return &shmkit_errors[SHMKIT_EBASE - code - 1];
}

const char *shmkit_errname(int code)
{
    const struct shmkit_errdef *d = shmkit_errdef(code);
    const char *s;

    if (code == 0)
        return "OK";
    if (d)
        return d->name;
    if (code < 0 && (s = shmkit__os_errno_name(-code)))
        return s;
    return "EUNKNOWN";
}

const char *shmkit_strerror(int code)
{
    const struct shmkit_errdef *d = shmkit_errdef(code);
    const char *s;

    if (code == 0)
        return "success";
    if (d)
        return d->msg;
    if (code < 0 && (s = shmkit__os_errno_desc(-code)))
        return s;
    return "unknown error";
}

static _Thread_local char shmkit_tls_msg[SHMKIT__MSG_MAX];

const char *shmkit_last_error(void)
{
    return shmkit_tls_msg;
}

int shmkit__fail(shmkit_block *b, int code, const char *fmt, ...)
{
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(shmkit_tls_msg, sizeof shmkit_tls_msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof shmkit_tls_msg)
        snprintf(shmkit_tls_msg + n, sizeof shmkit_tls_msg - (size_t)n,
                 ": %s (%s)", shmkit_strerror(code), shmkit_errname(code));
    if (b)
        memcpy(b->errmsg, shmkit_tls_msg, sizeof b->errmsg);
    return code;
}

const char *shmkit_version(void)
{
    return SHMKIT_VERSION_STRING;
}
