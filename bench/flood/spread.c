/* bench/bounds.sh: queries from many loopback client prefixes, to fill the tables a client can grow.
 * usage: spread DST_ADDR PORT RATE SECONDS PREFIXES MODE ARG
 *   MODE nx   ARG = a comma-separated list of zones: "nx-<16 hex digits>.ZONE A" (every name new: a cache miss
 *             each, an NXDOMAIN entry each), zones taken in turn
 *   MODE file ARG = a file of "NAME TYPE" lines (dnsperf's format; A, AAAA, TXT, MX, NS; at most 65536), sent in
 *             order, over and over: from the second pass on they are cache hits, which fill the UDP workers'
 *             hot-answer slots
 * Sends RATE queries per second for SECONDS, open loop, from 127.A.B.200 with A.B running over PREFIXES distinct
 * /24 prefixes (at most 65536): 256 sockets, each rebound to the next prefix after every send, so every client
 * prefix of the rate limiter's table is touched. Answers are read while sending and for one second after; prints
 *   sent=N answered=N noerror=N servfail=N nxdomain=N refused=N other=N tc=N prefixes=N
 * Loopback only. */
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
#include <unistd.h>
#define S 256
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
static uint64_t mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL; x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL; return x ^ (x >> 31);
}
static uint64_t answered, rc[16], tc;
static void drain(int fd) {
    static char buf[4096];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) return;
        if (n < 12 || !(buf[2] & 0x80)) continue;
        answered++; rc[buf[3] & 0x0f]++;
        if (buf[2] & 0x02) tc++;
    }
}
/* wire form of a dotted name into out (no trailing root label written twice); returns length or 0 */
static size_t wire(const char *name, unsigned char *out) {
    size_t len = 0;
    for (const char *p = name; *p;) {
        const char *dot = strchr(p, '.'); size_t l = dot ? (size_t)(dot - p) : strlen(p);
        if (l == 0) break;
        if (l > 63 || len + l + 2 > 255) return 0;
        out[len++] = (unsigned char)l; memcpy(out + len, p, l); len += l;
        p += l; if (*p == '.') p++;
    }
    out[len++] = 0;
    return len;
}
static int qtype_of(const char *t) {
    static const struct { const char *name; int code; } known[] = { {"A", 1}, {"NS", 2}, {"MX", 15}, {"TXT", 16}, {"AAAA", 28} };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(t, known[i].name)) return known[i].code;
    return 1;
}
static struct sockaddr_in dst;
static int open_from(unsigned prefix) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in src = { .sin_family = AF_INET };
    src.sin_addr.s_addr = htonl((127u << 24) | ((prefix & 0xffff) << 8) | 200u);
    if (bind(fd, (void *)&src, sizeof src) || connect(fd, (void *)&dst, sizeof dst)) { close(fd); return -1; }
    return fd;
}
int main(int argc, char **argv) {
    if (argc != 8) { fprintf(stderr, "usage: %s DST_ADDR PORT RATE SECONDS PREFIXES nx|file ZONES|FILE\n", argv[0]); return 2; }
    double rate = atof(argv[3]), secs = atof(argv[4]);
    unsigned prefixes = (unsigned)atoi(argv[5]);
    int nx = !strcmp(argv[6], "nx");
    if (rate <= 0 || secs <= 0 || prefixes < 1 || prefixes > 65536 || (!nx && strcmp(argv[6], "file"))) {
        fprintf(stderr, "bad RATE, SECONDS, PREFIXES or MODE\n"); return 2;
    }
    dst.sin_family = AF_INET; dst.sin_port = htons(atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &dst.sin_addr) != 1) { fprintf(stderr, "bad DST_ADDR\n"); return 2; }
    /* the questions: zones (nx) or the lines of the file */
    static unsigned char names[65536][256]; static size_t lens[65536]; static int types[65536];
    size_t count = 0;
    if (nx) {
        char *list = strdup(argv[7]);
        for (char *z = strtok(list, ","); z && count < 65536; z = strtok(NULL, ",")) {
            if (!(lens[count] = wire(z, names[count]))) { fprintf(stderr, "bad zone %s\n", z); return 2; }
            types[count++] = 1;
        }
    } else {
        FILE *f = fopen(argv[7], "r");
        if (!f) { perror(argv[7]); return 2; }
        char line[600], name[300], type[16];
        while (count < 65536 && fgets(line, sizeof line, f)) {
            if (sscanf(line, "%299s %15s", name, type) != 2) continue;
            if (!(lens[count] = wire(name, names[count]))) continue;
            types[count++] = qtype_of(type);
        }
        fclose(f);
    }
    if (!count) { fprintf(stderr, "no questions\n"); return 2; }
    int fds[S];
    unsigned next_prefix = 0;
    for (int i = 0; i < S; i++) {
        fds[i] = open_from(next_prefix++ % prefixes);
        if (fds[i] < 0) { perror("spread: socket"); return 1; }
    }
    uint64_t sent = 0, counter = 0, touched = S < prefixes ? S : prefixes;
    double start = now(), end = start + secs;
    unsigned char q[300];
    for (;;) {
        double t = now();
        if (t >= end) break;
        uint64_t due = (uint64_t)((t - start) * rate);
        int k = 0;
        while (sent < due && k < 64) {
            int slot = (int)(counter % S);
            size_t which, len;
            if (nx) {
                which = counter % count;
                uint64_t r = mix(counter * 0x100000001b3ULL + 48);
                q[12] = 19; memcpy(q + 13, "nx-", 3);
                snprintf((char *)q + 16, 17, "%016llx", (unsigned long long)r);
                memcpy(q + 32, names[which], lens[which]);
                len = 32 + lens[which];
            } else {
                which = counter % count;
                memcpy(q + 12, names[which], lens[which]);
                len = 12 + lens[which];
            }
            q[0] = (unsigned char)(counter >> 8); q[1] = (unsigned char)counter;
            q[2] = 0x01; q[3] = 0;                                  /* RD */
            q[4] = 0; q[5] = 1; memset(q + 6, 0, 6);                /* QDCOUNT 1 */
            q[len++] = 0; q[len++] = (unsigned char)types[which]; q[len++] = 0; q[len++] = 1;
            /* the socket moves on to the next prefix after its last answer had one round of S sends to come */
            if (prefixes > S && counter >= S) {
                drain(fds[slot]);
                close(fds[slot]);
                fds[slot] = open_from(next_prefix++ % prefixes);
                if (next_prefix <= prefixes) touched++;
                if (fds[slot] < 0) { perror("spread: rebind"); return 1; }
            }
            if (send(fds[slot], q, len, 0) > 0) sent++;
            counter++;
            if (prefixes <= S) drain(fds[slot]);
            k++;
        }
        if (k < 64) usleep(200);
    }
    double stop = now() + 1.0;
    while (now() < stop) { for (int i = 0; i < S; i++) drain(fds[i]); usleep(20000); }
    printf("sent=%llu answered=%llu noerror=%llu servfail=%llu nxdomain=%llu refused=%llu other=%llu tc=%llu prefixes=%llu\n",
           (unsigned long long)sent, (unsigned long long)answered, (unsigned long long)rc[0], (unsigned long long)rc[2],
           (unsigned long long)rc[3], (unsigned long long)rc[5],
           (unsigned long long)(answered - rc[0] - rc[2] - rc[3] - rc[5]), (unsigned long long)tc,
           (unsigned long long)touched);
    return 0;
}
