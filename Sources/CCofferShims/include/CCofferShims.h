#ifndef COFFER_CCOFFERSHIMS_H
#define COFFER_CCOFFERSHIMS_H

#include <sys/types.h>

/// The layout of Linux's `struct ucred` (socket(7), SO_PEERCRED), which Glibc's Swift module does not
/// expose: Glibc declares it only under _GNU_SOURCE.
struct coffer_ucred {
    pid_t pid;
    uid_t uid;
    gid_t gid;
};

/// Keeps secrets out of crash dumps and other processes: no core files (RLIMIT_CORE 0), and the process
/// not dumpable (PR_SET_DUMPABLE 0), which also stops processes of the same uid from ptrace-attaching or
/// reading /proc/PID/mem. Returns 0, or -1 with errno set. prctl is variadic, so Swift cannot call it.
int coffer_protect_process(void);

/// Returns memory the allocator holds free to the system (glibc's malloc_trim, declared in <malloc.h>, which
/// Glibc's Swift module does not include).
void coffer_release_free_memory(void);

#endif
