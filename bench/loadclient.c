/*
 * SSE load client for the benchmarks: opens N connections to one stream URL and
 * measures every message's latency. Written in C so that the client is never
 * the bottleneck of what it measures (bench/run.py measures its headroom).
 *
 * Each message's data line must be "<seq> <publish time, ns since the epoch>".
 * Commands on stdin, one per line, each answered with one JSON line on stdout:
 *   count    messages received so far
 *   report   counts and latency percentiles since the last report, then reset
 *   quit     exit
 * On start it prints {"ready": ...} once every connection has its headers.
 *
 * usage: loadclient HOST PORT PATH CONNECTIONS
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PENDING 1024

enum state { CONNECTING, HEADERS, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, CLOSED };

typedef struct {
    int fd;
    enum state state;
    long chunk_left;
    char line[512]; /* the SSE line (or header / chunk-size line) being assembled */
    int line_len;
    uint64_t received;
} conn_t;

static conn_t *conns;
static int nconns, established, closed_count;
static uint64_t received_total;
static uint32_t *lat_us;
static size_t lat_len, lat_cap;
static uint64_t lat_max_us;
static double t_start;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t realtime_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void record_latency(uint64_t sent_ns) {
    uint64_t now = realtime_ns();
    uint64_t us = now > sent_ns ? (now - sent_ns) / 1000 : 0;
    if (lat_len == lat_cap) {
        lat_cap = lat_cap ? lat_cap * 2 : 1 << 20;
        lat_us = realloc(lat_us, lat_cap * sizeof *lat_us);
        if (!lat_us) { perror("realloc"); exit(1); }
    }
    lat_us[lat_len++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
    if (us > lat_max_us) lat_max_us = us;
}

static void sse_line(conn_t *c) {
    c->line[c->line_len] = 0;
    if (c->line_len > 6 && memcmp(c->line, "data: ", 6) == 0) {
        char *end;
        strtoull(c->line + 6, &end, 10);
        if (*end == ' ') {
            c->received++;
            received_total++;
            record_latency(strtoull(end + 1, NULL, 10));
        }
    }
    c->line_len = 0;
}

static void push_char(conn_t *c, char ch) {
    if (c->line_len < (int)sizeof c->line - 1) c->line[c->line_len++] = ch;
}

/* Feed body bytes (chunk payload) to the SSE line splitter. */
static void body(conn_t *c, const char *p, long n) {
    for (long i = 0; i < n; i++) {
        if (p[i] == '\n') sse_line(c);
        else push_char(c, p[i]);
    }
}

static void consume(conn_t *c, const char *p, long n) {
    long i = 0;
    while (i < n) {
        switch (c->state) {
        case HEADERS:
            push_char(c, p[i]);
            if (c->line_len >= 4 && memcmp(c->line + c->line_len - 4, "\r\n\r\n", 4) == 0) {
                c->line_len = 0;
                c->state = CHUNK_SIZE;
                established++;
            } else if (c->line_len == (int)sizeof c->line - 1) {
                /* keep only the tail: enough to spot the blank line */
                memmove(c->line, c->line + c->line_len - 3, 3);
                c->line_len = 3;
            }
            i++;
            break;
        case CHUNK_SIZE:
            if (p[i] == '\n') {
                c->line[c->line_len] = 0;
                c->chunk_left = strtol(c->line, NULL, 16);
                c->line_len = 0;
                c->state = c->chunk_left ? CHUNK_DATA : CLOSED;
            } else if (p[i] != '\r') {
                push_char(c, p[i]);
            }
            i++;
            break;
        case CHUNK_DATA: {
            long take = n - i < c->chunk_left ? n - i : c->chunk_left;
            body(c, p + i, take);
            i += take;
            c->chunk_left -= take;
            if (!c->chunk_left) c->state = CHUNK_END;
            break;
        }
        case CHUNK_END: /* the CRLF after a chunk's data */
            if (p[i] == '\n') c->state = CHUNK_SIZE;
            i++;
            break;
        default:
            return;
        }
    }
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double pct_ms(double q) {
    if (!lat_len) return 0;
    size_t k = (size_t)(q * (lat_len - 1));
    return lat_us[k] / 1000.0;
}

static void report(int reset) {
    uint64_t min_conn = UINT64_MAX;
    for (int i = 0; i < nconns; i++)
        if (conns[i].state != CLOSED && conns[i].received < min_conn) min_conn = conns[i].received;
    if (min_conn == UINT64_MAX) min_conn = 0;
    if (reset) qsort(lat_us, lat_len, sizeof *lat_us, cmp_u32);
    printf("{\"established\": %d, \"closed\": %d, \"received\": %llu, \"min_per_conn\": %llu",
           established, closed_count, (unsigned long long)received_total,
           (unsigned long long)min_conn);
    if (reset) {
        printf(", \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f, \"samples\": %zu",
               pct_ms(0.50), pct_ms(0.99), lat_max_us / 1000.0, lat_len);
        lat_len = 0;
        lat_max_us = 0;
        received_total = 0;
        for (int i = 0; i < nconns; i++) conns[i].received = 0;
    }
    printf("}\n");
    fflush(stdout);
}

static int command(void) {
    char buf[256];
    ssize_t n = read(0, buf, sizeof buf - 1);
    if (n <= 0) return 0;
    buf[n] = 0;
    if (strstr(buf, "quit")) return 0;
    if (strstr(buf, "report")) report(1);
    else if (strstr(buf, "count")) report(0);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s HOST PORT PATH CONNECTIONS\n", argv[0]);
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    nconns = atoi(argv[4]);
    conns = calloc(nconns, sizeof *conns);
    char request[1024];
    int reqlen = snprintf(request, sizeof request,
                          "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n",
                          argv[3], argv[1]);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &addr.sin_addr);

    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, 0, &ev);
    t_start = now_s();
    int started = 0, announced = 0;
    static char buf[1 << 16];
    struct epoll_event events[256];
    for (;;) {
        /* At most MAX_PENDING handshakes in flight: firing all at once overflows the
         * server's accept queue (capped by net.core.somaxconn), and every dropped
         * handshake then waits out a 1 s retransmit, which measures the kernel's
         * timer rather than the server. */
        while (started < nconns && started - established - closed_count < MAX_PENDING) {
            conn_t *c = &conns[started++];
            c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            if (c->fd < 0) { perror("socket"); return 1; }
            int one = 1;
            setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
                perror("connect");
                return 1;
            }
            c->state = CONNECTING;
            ev.events = EPOLLOUT;
            ev.data.ptr = c;
            epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
        }
        int n = epoll_wait(ep, events, 256, 1000);
        for (int k = 0; k < n; k++) {
            conn_t *c = events[k].data.ptr;
            if (!c) {
                if (!command()) return 0;
                continue;
            }
            if (c->state == CONNECTING) {
                int err = 0;
                socklen_t len = sizeof err;
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err || write(c->fd, request, reqlen) != reqlen) {
                    c->state = CLOSED;
                    closed_count++;
                    close(c->fd);
                    continue;
                }
                c->state = HEADERS;
                ev.events = EPOLLIN;
                ev.data.ptr = c;
                epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
                continue;
            }
            for (;;) {
                ssize_t got = read(c->fd, buf, sizeof buf);
                if (got > 0) {
                    consume(c, buf, got);
                    if (got < (ssize_t)sizeof buf) break;
                } else if (got < 0 && (errno == EAGAIN || errno == EINTR)) {
                    break;
                } else {
                    c->state = CLOSED;
                    closed_count++;
                    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                    close(c->fd);
                    break;
                }
            }
        }
        if (!announced && established + closed_count >= nconns) {
            announced = 1;
            printf("{\"ready\": true, \"established\": %d, \"closed\": %d, \"connect_s\": %.3f}\n",
                   established, closed_count, now_s() - t_start);
            fflush(stdout);
        }
    }
}
