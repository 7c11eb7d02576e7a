/*
 * os_linux.h - the raw system calls under os_linux.c, in a table.
 *
 * os_linux.c calls the C library only through `shmkit__sys`, so tests can
 * make one call fail (ENOSPC, EINTR, EMFILE, a failing mmap) and check both
 * that the OS layer reacts (EINTR retried) and that the layer above leaves
 * nothing behind. Each entry has the C library's own signature and errno
 * convention. shmkit__os_reset() restores the real calls.
 */
#ifndef SHMKIT_OS_LINUX_H
#define SHMKIT_OS_LINUX_H

#include <stddef.h>
#include <sys/stat.h>
#include <sys/types.h>

typedef struct shmkit__linux_sys {
    int (*open)(const char *path, int flags, mode_t mode);
    int (*close)(int fd);
    int (*fstat)(int fd, struct stat *st);
    int (*ftruncate)(int fd, off_t len);
    int (*posix_fallocate)(int fd, off_t off, off_t len); /* returns errno */
    void *(*mmap)(void *addr, size_t len, int prot, int flags, int fd,
                  off_t off);
    int (*munmap)(void *addr, size_t len);
    void *(*mremap)(void *old, size_t old_len, size_t new_len, int flags);
    int (*madvise)(void *addr, size_t len, int advice);
    int (*unlink)(const char *path);
    int (*linkat)(int olddirfd, const char *oldpath, int newdirfd,
                  const char *newpath, int flags);
    ssize_t (*pread)(int fd, void *buf, size_t len, off_t off);
    ssize_t (*pwrite)(int fd, const void *buf, size_t len, off_t off);
    int (*renameat2)(int olddirfd, const char *oldpath, int newdirfd,
                     const char *newpath, unsigned int flags);
    ssize_t (*getrandom)(void *buf, size_t len, unsigned int flags);
} shmkit__linux_sys;

extern shmkit__linux_sys shmkit__sys;

#endif
