#define _GNU_SOURCE
#include <malloc.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "CCofferShims.h"

// If the declaration ever drifts from the kernel's, the build fails here rather than at run time.
_Static_assert(sizeof(struct coffer_ucred) == sizeof(struct ucred), "struct coffer_ucred must match struct ucred");
_Static_assert(offsetof(struct coffer_ucred, uid) == offsetof(struct ucred, uid), "uid offset");
_Static_assert(offsetof(struct coffer_ucred, gid) == offsetof(struct ucred, gid), "gid offset");

int coffer_protect_process(void) {
    struct rlimit none = {0, 0};
    if (setrlimit(RLIMIT_CORE, &none) != 0) {
        return -1;
    }
    return prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

void coffer_release_free_memory(void) {
    malloc_trim(0);
}
