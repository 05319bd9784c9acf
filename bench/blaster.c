/*
 * A trivial SSE server in C, for one purpose: to show how many deliveries per
 * second the load client can take in, far beyond what it reports for the servers
 * under test. It accepts N connections, answers each with chunked SSE headers,
 * then writes "<seq> <ns>" frames to every socket, flat out, for S seconds.
 *
 * usage: blaster PORT CONNECTIONS SECONDS
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s PORT CONNECTIONS SECONDS\n", argv[0]);
        return 2;
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int n = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) || listen(lfd, 4096)) {
        perror("listen");
        return 1;
    }
    printf("listening\n");
    fflush(stdout);
    int *fds = calloc(n, sizeof *fds);
    const char *head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n";
    char req[4096];
    for (int i = 0; i < n; i++) {
        fds[i] = accept(lfd, NULL, NULL);
        if (read(fds[i], req, sizeof req) <= 0 || write(fds[i], head, strlen(head)) < 0) return 1;
    }
    uint64_t sent = 0, seq = 0;
    double start = now_s();
    char frame[128], chunk[160];
    while (now_s() - start < seconds) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        int len = snprintf(frame, sizeof frame, "data: %llu %llu\n\n", (unsigned long long)++seq,
                           (unsigned long long)ts.tv_sec * 1000000000ull + ts.tv_nsec);
        int clen = snprintf(chunk, sizeof chunk, "%x\r\n%s\r\n", len, frame);
        for (int i = 0; i < n; i++)
            if (write(fds[i], chunk, clen) == clen) sent++;
    }
    printf("{\"sent\": %llu, \"seconds\": %.3f}\n", (unsigned long long)sent, now_s() - start);
    return 0;
}
