/*
 * list_and_counter.c - a ShareableList and a typed counter shared with
 * child processes, from C. Both get generated names ("psm_..."), which the
 * workers attach by; CPython's ShareableList(name=...) reads the same list,
 * shmkit.Value(name=...) the same counter.
 */
#include <shmkit.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 4

static int fail(const char *what, int r)
{
    fprintf(stderr, "%s: %s\n", what, shmkit_last_error());
    return r < 0 ? 1 : r;
}

/* Each worker reads the job list and counts what it did, atomically. */
static int worker(int id, const char *list_name, const char *counter_name)
{
    shmkit_list *jobs;
    shmkit_array *done;
    shmkit_item item;
    size_t i;

    if (shmkit_list_attach(&jobs, list_name, 0) < 0 ||
        shmkit_array_attach(&done, counter_name, 0) < 0)
        return 1;
    for (i = (size_t)id; i < shmkit_list_len(jobs); i += WORKERS)
        if (shmkit_list_get(jobs, (ptrdiff_t)i, &item) == 0)
            shmkit_array_fetch_add(done, 0, 1, NULL); /* no lock needed */
    shmkit_list_close(jobs);
    shmkit_array_close(done);
    return 0;
}

int main(void)
{
    shmkit_item items[] = {shmkit_item_int(42), shmkit_item_float(2.5),
                           shmkit_item_str("héllo"), shmkit_item_none()};
    shmkit_list *jobs;
    shmkit_array *done;
    int64_t total = 0;
    char format[64] = "";
    int i, r, status, bad = 0;

    if ((r = shmkit_list_create(&jobs, NULL, items, 4, 0)) < 0)
        return fail("create list", r);
    if ((r = shmkit_value_create(&done, NULL, 'q', 0)) < 0)
        return fail("create counter", r);
    for (i = 0; i < WORKERS; i++)
        if (fork() == 0)
            _exit(worker(i, shmkit_block_name(shmkit_list_block(jobs)),
                         shmkit_block_name(shmkit_array_block(done))));
    for (i = 0; i < WORKERS; i++)
        if (wait(&status) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
            bad = 1;
    shmkit_array_load(done, 0, &total);
    shmkit_list_format(jobs, format, sizeof format, NULL);
    printf("%zu jobs, %lld done, format %s\n", shmkit_list_len(jobs),
           (long long)total, format);
    shmkit_list_unlink(jobs);
    shmkit_list_close(jobs);
    shmkit_array_unlink(done);
    shmkit_array_close(done);
    return bad || total != 4;
}
