/*
 * Pipelining publisher for the benchmarks: POST /publish at a fixed rate of
 * events per second, open-loop, without waiting for answers. Each request
 * carries one event (a JSON object) or BATCH events (a JSON array), each event's
 * data "<seq> <publish time, ns since the epoch>" as bench/loadclient.c reads it.
 * Requests go round-robin over CONNS keep-alive connections, as many in flight
 * as the server lets in. Written in C so that the publisher is never the
 * bottleneck: it reports its own CPU time.
 *
 * At the end it prints one JSON line: events and requests sent, answers by
 * status, its CPU seconds, and how far behind schedule it ever fell.
 *
 * usage: publisher HOST PORT EVENTS_PER_S SECONDS BATCH CONNS TOPIC
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64
#define OUT_CAP (8 << 20)
#define IN_CAP (1 << 20)

typedef struct {
    int fd;
    char *out;
    size_t out_len, out_off;
    char in[IN_CAP];
    size_t in_len;
    long requests_in_flight;
} conn_t;

static conn_t conns[MAX_CONNS];
static int nconns;
static long answered_ok, answered_503, answered_other, requests_sent;

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

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* Append one request of `batch` events to c's output buffer. */
static void queue_request(conn_t *c, const char *host, const char *topic, uint64_t *seq, int batch) {
    char body[65536];
    size_t len = 0;
    uint64_t ns = realtime_ns();
    if (batch > 1) body[len++] = '[';
    for (int i = 0; i < batch; i++) {
        len += snprintf(body + len, sizeof body - len, "%s{\"topic\":\"%s\",\"data\":\"%llu %llu\"}",
                        i ? "," : "", topic, (unsigned long long)++*seq, (unsigned long long)ns);
    }
    if (batch > 1) body[len++] = ']';
    if (c->out_len + len + 256 > OUT_CAP) {
        fprintf(stderr, "publisher: output buffer full: the server stopped reading\n");
        exit(1);
    }
    c->out_len += snprintf(c->out + c->out_len, OUT_CAP - c->out_len,
                           "POST /publish HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                           "Content-Length: %zu\r\n\r\n",
                           host, len);
    memcpy(c->out + c->out_len, body, len);
    c->out_len += len;
    c->requests_in_flight++;
    requests_sent++;
}

static void flush_out(conn_t *c) {
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) return;
            die("write");
        }
        c->out_off += n;
    }
    c->out_off = c->out_len = 0;
}

/* Count every complete answer in c's input buffer. */
static void parse_answers(conn_t *c) {
    size_t pos = 0;
    for (;;) {
        char *head_end = memmem(c->in + pos, c->in_len - pos, "\r\n\r\n", 4);
        if (!head_end) break;
        size_t head_len = head_end - (c->in + pos) + 4;
        long body_len = 0;
        for (char *p = c->in + pos; p < head_end; p++) {
            if ((p == c->in + pos || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0)
                body_len = strtol(p + 15, NULL, 10);
        }
        if (pos + head_len + body_len > c->in_len) break;
        int status = atoi(c->in + pos + 9); /* after "HTTP/1.1 " */
        if (status == 200) answered_ok++;
        else if (status == 503) answered_503++;
        else answered_other++;
        c->requests_in_flight--;
        pos += head_len + body_len;
    }
    memmove(c->in, c->in + pos, c->in_len - pos);
    c->in_len -= pos;
}

static void read_answers(conn_t *c) {
    for (;;) {
        if (c->in_len == IN_CAP) die("answer too large");
        ssize_t n = read(c->fd, c->in + c->in_len, IN_CAP - c->in_len);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR) break;
            die("read");
        }
        if (n == 0) {
            fprintf(stderr, "publisher: the server closed a connection\n");
            exit(1);
        }
        c->in_len += n;
        parse_answers(c);
    }
}

static long in_flight(void) {
    long total = 0;
    for (int i = 0; i < nconns; i++) total += conns[i].requests_in_flight;
    return total;
}

static void pump(double timeout_s) {
    struct pollfd fds[MAX_CONNS];
    for (int i = 0; i < nconns; i++) {
        fds[i].fd = conns[i].fd;
        fds[i].events = POLLIN | (conns[i].out_len > conns[i].out_off ? POLLOUT : 0);
    }
    struct timespec timeout = {(time_t)timeout_s, (long)((timeout_s - (time_t)timeout_s) * 1e9)};
    if (ppoll(fds, nconns, &timeout, NULL) < 0 && errno != EINTR) die("ppoll");
    for (int i = 0; i < nconns; i++) {
        if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) read_answers(&conns[i]);
        if (fds[i].revents & POLLOUT) flush_out(&conns[i]);
    }
}

int main(int argc, char **argv) {
    if (argc != 8) {
        fprintf(stderr, "usage: publisher HOST PORT EVENTS_PER_S SECONDS BATCH CONNS TOPIC\n");
        return 2;
    }
    const char *host = argv[1], *topic = argv[7];
    double rate = atof(argv[3]), seconds = atof(argv[4]);
    int batch = atoi(argv[5]);
    nconns = atoi(argv[6]);
    if (batch < 1 || batch > 500 || nconns < 1 || nconns > MAX_CONNS || rate <= 0) {
        fprintf(stderr, "publisher: BATCH 1..500, CONNS 1..%d, EVENTS_PER_S > 0\n", MAX_CONNS);
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    inet_pton(AF_INET, host, &addr.sin_addr);
    for (int i = 0; i < nconns; i++) {
        conn_t *c = &conns[i];
        c->fd = socket(AF_INET, SOCK_STREAM, 0);
        if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
        c->out = malloc(OUT_CAP);
    }
    long total_requests = (long)(rate * seconds / batch);
    double request_interval = batch / rate, start = now_s(), max_late = 0;
    uint64_t seq = 0;
    long due_sent = 0;
    int next = 0;
    while (due_sent < total_requests) {
        double now = now_s();
        long due = (long)((now - start) / request_interval) + 1;
        if (due > total_requests) due = total_requests;
        if (due_sent < due && now - (start + due_sent * request_interval) > max_late)
            max_late = now - (start + due_sent * request_interval);
        while (due_sent < due) {
            queue_request(&conns[next], host, topic, &seq, batch);
            flush_out(&conns[next]);
            next = (next + 1) % nconns;
            due_sent++;
        }
        double wait = start + due_sent * request_interval - now_s();
        pump(wait > 0 ? wait : 0);
    }
    double deadline = now_s() + 15;
    while (in_flight() > 0 && now_s() < deadline) pump(0.1);
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    double cpu = usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
                 usage.ru_stime.tv_usec / 1e6;
    printf("{\"events\": %llu, \"requests\": %ld, \"ok\": %ld, \"busy\": %ld, \"other\": %ld,"
           " \"unanswered\": %ld, \"ok_events\": %ld, \"cpu_s\": %.3f, \"wall_s\": %.3f,"
           " \"max_late_ms\": %.1f}\n",
           (unsigned long long)seq, requests_sent, answered_ok, answered_503, answered_other,
           in_flight(), answered_ok * batch, cpu, now_s() - start, max_late * 1000);
    return 0;
}
