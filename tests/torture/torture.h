/*
 * torture.h - what the attacks of the torture program share: the table
 * row each attack fills, child-process supervision (exit status, signal,
 * hang), counting objects in the (private) shm directory, randomness.
 *
 * Each attack lives in its own t_*.c file and fills one or more rows.
 */
#ifndef SHMKIT_TORTURE_H
#define SHMKIT_TORTURE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One line of the table. Counters an attack does not use stay 0 and
 * print as "-" when the attack says so (unused bits). */
struct row {
    char attack[40];
    char kind[16];
    long runs;       /* attempts / operations driven */
    long kills;      /* SIGKILLs sent by the torture program */
    long deaths;     /* lock owner deaths reported to a survivor */
    long hangs;      /* something that did not finish in its budget */
    long leaks;      /* objects left after the tracker / one gc */
    long mutations;  /* mutated images tried */
    long crashes;    /* deaths by a signal other than SIGKILL/SIGBUS */
    long sigbus;     /* deaths by SIGBUS */
    long bad;        /* wrong results (wrong error code, duplicate report) */
    char note[160];
};

struct torture {
    bool longrun;
    double scale;        /* multiplies every count and duration */
    const char *self;    /* path of this program, for exec'd children */
    const char *cli;     /* the shmkit command (a private copy), or NULL */
    const char *python;  /* a Python with shmkit importable, or NULL */
    const char *pyscript;/* torture_py.py */
    bool verbose;
};

extern struct torture T;

/* A new row in the table. */
struct row *row_new(const char *attack, const char *kind);

/* Child supervision ----------------------------------------------------- */

enum outcome {
    OUT_OK,      /* exited 0 */
    OUT_EXIT,    /* exited non-zero (code in *code) */
    OUT_KILLED,  /* SIGKILL (ours) */
    OUT_SIGBUS,
    OUT_CRASH,   /* another signal */
    OUT_HANG     /* no exit within the budget: killed by us */
};

/* Waits up to timeout_ms (< 0: forever) for child pid; on timeout kills
 * it with SIGKILL and reaps it. *code gets the exit code or signal. */
enum outcome child_wait(pid_t pid, int timeout_ms, int *code);

/* Counts an outcome into a row (crash, SIGBUS, hang). */
void row_count(struct row *r, enum outcome o);

/* Forks; the child runs fn(arg) and _exits with its result. -1 on error. */
pid_t child_run(int (*fn)(void *), void *arg);

/* Forks and execs argv[0] (stdout and stderr to /dev/null if quiet).
 * Returns the pid, or -1 if fork failed. *exec_errno gets 0 once the exec
 * has succeeded, or the errno of a failed exec (the child then exits 127):
 * a program that could not be started is the harness's problem, never
 * counted as that program's answer. */
pid_t child_exec(char *const argv[], bool quiet, int *exec_errno);

/* Counts entries of /dev/shm whose name starts with prefix ("" = all). */
long shm_count(const char *prefix);
/* Prints every entry of /dev/shm (to stderr, after `what`). */
void shm_print(const char *what);
/* Removes entries of /dev/shm starting with prefix. */
void shm_clear(const char *prefix);

/* Random numbers (xorshift, seeded once in main). */
uint64_t rnd(void);
uint64_t rnd_below(uint64_t n);
void rnd_seed(uint64_t s);

/* Monotonic time in ns. */
int64_t now_ns(void);
void sleep_ns(int64_t ns);

/* Scaled count: n in the short run, nlong with --long. */
long scaled(long n, long nlong);

/* Waits (bounded) for the trackers of dead families in the runtime
 * directory to exit. */
void trackers_settle(int timeout_ms);

/* The attacks. */
void attack_locks(void);
void attack_create(void);
void attack_full(void);
void attack_mutate(void);
void attack_truncate(void);
void attack_manager(void);
void attack_fds(void);
void attack_qwait(void);
void attack_qbatch(void);

/* Children exec'd by attacks (torture --child WHAT ARGS...). */
int child_create_main(int argc, char **argv);

#endif
