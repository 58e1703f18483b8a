#define _GNU_SOURCE
#include <sys/socket.h>
#include <stddef.h>

#include "CCofferShims.h"

// If the declaration ever drifts from the kernel's, the build fails here rather than at run time.
_Static_assert(sizeof(struct coffer_ucred) == sizeof(struct ucred), "struct coffer_ucred must match struct ucred");
_Static_assert(offsetof(struct coffer_ucred, uid) == offsetof(struct ucred, uid), "uid offset");
_Static_assert(offsetof(struct coffer_ucred, gid) == offsetof(struct ucred, gid), "gid offset");
