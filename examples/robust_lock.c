/*
 * robust_lock.c - a lock whose holder is killed never deadlocks the others:
 * the next locker is told, repairs the data, and marks the lock consistent.
 */
#include <shmkit.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

/* What lives in the block: a lock and the two fields it keeps equal. */
struct account {
    shmkit_mutex lock;
    int64_t debit, credit;
};

int main(void)
{
    shmkit_block *b;
    struct account *acc;
    int ready[2], status, r, ok;
    pid_t pid;

    if (shmkit_block_create(&b, NULL, sizeof *acc, 0) < 0 ||
        pipe(ready) < 0)
        return 1;
    acc = shmkit_block_data(b);
    shmkit_mutex_init(&acc->lock, 0);

    pid = fork();
    if (pid == 0) {                       /* dies halfway through an update */
        shmkit_mutex_lock(&acc->lock);
        acc->debit += 100;
        (void)!write(ready[1], "x", 1);
        pause();
    }
    (void)!read(ready[0], &(char){0}, 1);
    kill(pid, SIGKILL);
    if (waitpid(pid, &status, 0) != pid || !WIFSIGNALED(status) ||
        WTERMSIG(status) != SIGKILL) {    /* it must have died holding */
        fprintf(stderr, "holder: unexpected status %#x\n", status);
        shmkit_block_unlink(b);
        shmkit_block_close(b);
        return 1;
    }

    r = shmkit_mutex_lock(&acc->lock);    /* no deadlock */
    if (r == SHMKIT_EOWNERDEAD) {
        printf("previous holder died: debit %lld, credit %lld; repairing\n",
               (long long)acc->debit, (long long)acc->credit);
        acc->credit = acc->debit;         /* restore the invariant */
        shmkit_mutex_consistent(&acc->lock);
    }
    shmkit_mutex_unlock(&acc->lock);
    printf("debit %lld, credit %lld\n", (long long)acc->debit,
           (long long)acc->credit);
    ok = r == SHMKIT_EOWNERDEAD && acc->debit == acc->credit;
    shmkit_block_unlink(b);
    shmkit_block_close(b);
    return ok ? 0 : 1;
}
