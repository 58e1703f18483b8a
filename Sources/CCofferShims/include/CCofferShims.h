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

#endif
