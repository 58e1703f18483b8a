#define _GNU_SOURCE
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
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

int coffer_open_path_nofollow(const char *path) {
    return open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
}

int coffer_set_group(int fd, gid_t group) {
    return fchownat(fd, "", (uid_t)-1, group, AT_EMPTY_PATH);
}

// `cofferd serve` shuts down on SIGTERM, SIGINT and SIGHUP. libdispatch's signal sources (which the service
// group would use) lose a signal that reaches a thread without their mask: on Linux they read signals from a
// signalfd, and the main thread, parked by dispatch_main in sigsuspend, takes any signal first. So cofferd
// catches them itself, from before main: a handler that writes the signal's number to a pipe (the one
// async-signal-safe thing it does), whichever thread it runs on; the server reads the pipe. A signal that
// arrives before the server reads waits in the pipe. Only for serve: the other commands keep the defaults.
// glibc passes argc and argv to constructors.
static int shutdown_pipe[2] = {-1, -1};

static void coffer_on_shutdown_signal(int signo) {
    int saved = errno;
    unsigned char number = (unsigned char)signo;
    ssize_t ignored = write(shutdown_pipe[1], &number, 1);
    (void)ignored;
    errno = saved;
}

__attribute__((constructor)) static void coffer_catch_shutdown_signals(int argc, char **argv, char **envp) {
    (void)envp;
    if (argc < 2 || argv == NULL || argv[0] == NULL || argv[1] == NULL) {
        return;
    }
    const char *slash = strrchr(argv[0], '/');
    const char *program = slash != NULL ? slash + 1 : argv[0];
    if (strcmp(program, "cofferd") != 0 || strcmp(argv[1], "serve") != 0) {
        return;
    }
    if (pipe2(shutdown_pipe, O_CLOEXEC) != 0) {
        shutdown_pipe[0] = shutdown_pipe[1] = -1;
        return;
    }
    // The handler must never block: a full pipe already says enough.
    fcntl(shutdown_pipe[1], F_SETFL, fcntl(shutdown_pipe[1], F_GETFL) | O_NONBLOCK);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = coffer_on_shutdown_signal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
}

int coffer_shutdown_signal_fd(void) {
    return shutdown_pipe[0];
}
