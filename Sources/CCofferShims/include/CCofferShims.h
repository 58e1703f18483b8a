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

/// The read end of the pipe to which `cofferd serve` writes the number of each shutdown signal (SIGTERM,
/// SIGINT, SIGHUP) it receives, from a handler installed before main; -1 in any other program.
int coffer_shutdown_signal_fd(void);

/// open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC): a descriptor for the file itself, never a link's target.
/// Glibc's Swift module does not expose O_PATH (it is under _GNU_SOURCE).
int coffer_open_path_nofollow(const char *path);

/// fchownat(fd, "", -1, group, AT_EMPTY_PATH): gives the file `fd` names (an O_PATH descriptor) the group.
int coffer_set_group(int fd, gid_t group);

#endif
