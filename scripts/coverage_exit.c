/*
 * coverage_exit.c - linked into every program of scripts/coverage.py's
 * build with -Wl,--wrap=_exit: writes the coverage counts before _exit.
 *
 * The daemons (tracker, manager) and the tests' forked children leave by
 * _exit, which skips the atexit handler where gcov writes its counts: without
 * this, nothing they run would count as run.
 */
extern void __gcov_dump(void);
extern void __real__exit(int status) __attribute__((noreturn));

void __wrap__exit(int status) __attribute__((noreturn));

void __wrap__exit(int status)
{
    __gcov_dump();
    __real__exit(status);
}
