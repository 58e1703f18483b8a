// loadgen: one native load generator for cofferd and Redis, so that both are measured the same way.
//
// It sends pre-built requests (a file of frames, made by benchmarks/compare.py) over Unix sockets from one
// epoll thread, keeps DEPTH requests outstanding on each of CONNECTIONS connections, checks every answer, and
// prints throughput and latency percentiles as one JSON line. The protocol only decides how an answer ends:
//   coffer: a varint length then a protobuf Response; OK unless its status (field 2) has a non-zero code.
//   redis:  a RESP reply ($bulk, +simple, :integer, -error).
// Modes: "load" (measure), "flood" (write requests as fast as possible and never read), "hold" (keep the
// connections open with one request every --interval seconds, and read the answers).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum protocol { COFFER, REDIS };
enum mode { LOAD, FLOOD, HOLD };

struct frame {
    const uint8_t *bytes;
    size_t length;
};

struct conn {
    int fd;
    uint8_t *in;
    size_t in_len, in_cap;
    uint8_t out[1 << 16];
    size_t out_len, out_off;
    uint64_t *sent_at; /* ring of send times, DEPTH long */
    size_t head, outstanding;
    size_t next_frame;
    double next_hold;
};

static enum protocol proto;
static enum mode mode;
static struct frame *frames;
static size_t frame_count;
static size_t depth = 1;
static uint64_t completed, failed;
/* Latency histogram: 1 us buckets up to 100 ms, then one overflow bucket. */
#define BUCKETS 100001
static uint64_t histogram[BUCKETS];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void load_frames(const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) die(path);
    struct stat st;
    if (fstat(fd, &st) != 0) die("fstat");
    uint8_t *data = malloc((size_t)st.st_size);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t n = read(fd, data + got, (size_t)st.st_size - got);
        if (n <= 0) die("read frames");
        got += (size_t)n;
    }
    close(fd);
    /* The file is a sequence of: 4-byte little-endian length, then the request's bytes on the wire. */
    size_t capacity = 1024, off = 0;
    frames = malloc(capacity * sizeof *frames);
    while (off + 4 <= got) {
        uint32_t length = (uint32_t)data[off] | (uint32_t)data[off + 1] << 8 | (uint32_t)data[off + 2] << 16 |
                          (uint32_t)data[off + 3] << 24;
        off += 4;
        if (off + length > got) break;
        if (frame_count == capacity) frames = realloc(frames, (capacity *= 2) * sizeof *frames);
        frames[frame_count++] = (struct frame){data + off, length};
        off += length;
    }
    if (frame_count == 0) {
        fprintf(stderr, "loadgen: %s holds no requests\n", path);
        exit(1);
    }
}

static int connect_unix(const char *path) {
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, path, sizeof address.sun_path - 1);
    /* A blocking connect waits while the server's accept queue is full; then the socket goes non-blocking. */
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) die("connect");
    if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) != 0) die("fcntl");
    return fd;
}

/* Reads a varint at p (at most end); returns bytes used, 0 if incomplete, -1 if malformed. */
static int varint(const uint8_t *p, const uint8_t *end, uint64_t *value) {
    uint64_t v = 0;
    for (int i = 0; i < 10; i++) {
        if (p + i >= end) return 0;
        v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) {
            *value = v;
            return i + 1;
        }
    }
    return -1;
}

/* Whether a Response body is OK: its status (field 2, a message) has no non-zero code (field 1). */
static int coffer_ok(const uint8_t *p, const uint8_t *end) {
    while (p < end) {
        uint64_t key, value;
        int n = varint(p, end, &key);
        if (n <= 0) return 0;
        p += n;
        switch (key & 7) {
        case 0:
            n = varint(p, end, &value);
            if (n <= 0) return 0;
            p += n;
            break;
        case 2: {
            n = varint(p, end, &value);
            if (n <= 0 || p + n + value > end) return 0;
            const uint8_t *body = p + n;
            if ((key >> 3) == 2 && value >= 2 && body[0] == 0x08 && body[1] != 0) return 0;
            p = body + value;
            break;
        }
        default:
            return 0;
        }
    }
    return 1;
}

/* Length of one complete answer at the start of c->in, 0 if incomplete; *ok says whether it succeeded. */
static size_t answer_length(struct conn *c, int *ok) {
    const uint8_t *p = c->in, *end = c->in + c->in_len;
    if (proto == COFFER) {
        uint64_t length;
        int n = varint(p, end, &length);
        if (n < 0) {
            fprintf(stderr, "loadgen: a malformed answer\n");
            exit(1);
        }
        if (n == 0 || (size_t)(end - p) < n + length) return 0;
        *ok = coffer_ok(p + n, p + n + length);
        return (size_t)n + length;
    }
    const uint8_t *line = memmem(p, (size_t)(end - p), "\r\n", 2);
    if (!line) return 0;
    size_t header = (size_t)(line - p) + 2;
    *ok = p[0] != '-';
    if (p[0] != '$') return header;
    long length = strtol((const char *)p + 1, NULL, 10);
    if (length < 0) return header;
    if ((size_t)(end - p) < header + (size_t)length + 2) return 0;
    return header + (size_t)length + 2;
}

static void queue_request(struct conn *c, uint64_t at) {
    struct frame f = frames[c->next_frame];
    c->next_frame = (c->next_frame + 1) % frame_count;
    if (c->out_len + f.length > sizeof c->out) return;
    memcpy(c->out + c->out_len, f.bytes, f.length);
    c->out_len += f.length;
    if (mode != FLOOD) {
        c->sent_at[(c->head + c->outstanding) % depth] = at;
        c->outstanding++;
    }
}

static int flush_out(struct conn *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN) return 0;
            return -1;
        }
        c->out_off += (size_t)n;
    }
    c->out_len = c->out_off = 0;
    return 0;
}

static void record(uint64_t nanoseconds) {
    uint64_t micros = nanoseconds / 1000;
    histogram[micros < BUCKETS - 1 ? micros : BUCKETS - 1]++;
}

static double percentile(double p) {
    uint64_t total = 0;
    for (size_t i = 0; i < BUCKETS; i++) total += histogram[i];
    if (total == 0) return 0;
    uint64_t rank = (uint64_t)(p * (double)total);
    uint64_t seen = 0;
    for (size_t i = 0; i < BUCKETS; i++) {
        seen += histogram[i];
        if (seen > rank) return (double)i;
    }
    return (double)(BUCKETS - 1);
}

int main(int argc, char **argv) {
    const char *socket_path = NULL, *frames_path = NULL;
    size_t connections = 1;
    double seconds = 5, warmup = 1, interval = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--socket")) socket_path = argv[i + 1];
        else if (!strcmp(argv[i], "--frames")) frames_path = argv[i + 1];
        else if (!strcmp(argv[i], "--protocol")) proto = !strcmp(argv[i + 1], "redis") ? REDIS : COFFER;
        else if (!strcmp(argv[i], "--mode")) mode = !strcmp(argv[i + 1], "flood") ? FLOOD : !strcmp(argv[i + 1], "hold") ? HOLD : LOAD;
        else if (!strcmp(argv[i], "--connections")) connections = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--depth")) depth = strtoul(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--seconds")) seconds = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--warmup")) warmup = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--interval")) interval = atof(argv[i + 1]);
        else {
            fprintf(stderr, "loadgen: unknown option %s\n", argv[i]);
            return 64;
        }
    }
    if (!socket_path || !frames_path || depth == 0 || connections == 0) {
        fprintf(stderr, "usage: loadgen --socket PATH --frames FILE [--protocol coffer|redis] [--mode load|flood|hold] "
                        "[--connections N] [--depth N] [--seconds S] [--warmup S] [--interval S]\n");
        return 64;
    }
    load_frames(frames_path);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *conns = calloc(connections, sizeof *conns);
    uint64_t start = now_ns();
    for (size_t i = 0; i < connections; i++) {
        struct conn *c = &conns[i];
        c->fd = connect_unix(socket_path);
        c->in_cap = 1 << 16;
        c->in = malloc(c->in_cap);
        c->sent_at = calloc(depth, sizeof *c->sent_at);
        c->next_frame = (i * 7919) % frame_count;
        c->next_hold = (double)i * interval / (double)connections;
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) die("epoll_ctl");
        if (mode == LOAD)
            for (size_t d = 0; d < depth; d++) queue_request(c, start);
    }
    uint64_t measure_from = start + (uint64_t)(warmup * 1e9);
    uint64_t stop_at = measure_from + (uint64_t)(seconds * 1e9);
    uint64_t counted_from = 0;
    struct epoll_event events[256];
    for (;;) {
        uint64_t now = now_ns();
        if (now >= stop_at) break;
        if (mode == LOAD && !counted_from && now >= measure_from) {
            counted_from = now;
            completed = failed = 0;
            memset(histogram, 0, sizeof histogram);
        }
        if (mode == HOLD) {
            double elapsed = (double)(now - start) / 1e9;
            for (size_t i = 0; i < connections; i++) {
                if (elapsed >= conns[i].next_hold && conns[i].outstanding < depth) {
                    queue_request(&conns[i], now);
                    conns[i].next_hold += interval;
                    if (flush_out(&conns[i]) != 0) die("send");
                }
            }
        }
        int n = epoll_wait(ep, events, 256, mode == LOAD ? 100 : 10);
        for (int e = 0; e < n; e++) {
            struct conn *c = events[e].data.ptr;
            if (events[e].events & (EPOLLERR | EPOLLHUP)) {
                fprintf(stderr, "loadgen: the server closed a connection\n");
                return 2;
            }
            if (mode == FLOOD) {
                while (c->out_len == 0) {
                    queue_request(c, 0);
                    if (flush_out(c) != 0) break;
                }
                if (flush_out(c) != 0) break;
                continue;
            }
            for (;;) {
                if (c->in_len == c->in_cap) c->in = realloc(c->in, c->in_cap *= 2);
                ssize_t got = recv(c->fd, c->in + c->in_len, c->in_cap - c->in_len, 0);
                if (got == 0) {
                    fprintf(stderr, "loadgen: the server closed a connection\n");
                    return 2;
                }
                if (got < 0) {
                    if (errno == EAGAIN) break;
                    die("recv");
                }
                c->in_len += (size_t)got;
                uint64_t at = now_ns();
                size_t used = 0, length;
                int ok = 0;
                while (c->outstanding > 0) {
                    struct conn view = *c;
                    view.in = c->in + used;
                    view.in_len = c->in_len - used;
                    if (!(length = answer_length(&view, &ok))) break;
                    used += length;
                    if (ok) completed++; else failed++;
                    record(at - c->sent_at[c->head]);
                    c->head = (c->head + 1) % depth;
                    c->outstanding--;
                    if (mode == LOAD) queue_request(c, at);
                }
                memmove(c->in, c->in + used, c->in_len - used);
                c->in_len -= used;
            }
            if (flush_out(c) != 0) die("send");
        }
    }
    double elapsed = counted_from ? (double)(now_ns() - counted_from) / 1e9 : (double)(now_ns() - start) / 1e9;
    printf("{\"completed\": %llu, \"failed\": %llu, \"seconds\": %.3f, \"per_second\": %.0f, "
           "\"p50_us\": %.0f, \"p99_us\": %.0f, \"p999_us\": %.0f, \"max_us\": %.0f}\n",
           (unsigned long long)completed, (unsigned long long)failed, elapsed, (double)completed / elapsed,
           percentile(0.50), percentile(0.99), percentile(0.999), percentile(1.0));
    return failed > 0 ? 3 : 0;
}
