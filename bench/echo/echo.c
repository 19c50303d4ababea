/* W0 floor: a UDP "DNS server" that only sets QR and sends each query back, in batches.
 * usage: echo ADDR PORT     (loopback only; runs until killed) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#define N 64
int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s ADDR PORT\n", argv[0]); return 2; }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[2])) };
    if (fd < 0 || inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || bind(fd, (void *)&a, sizeof a)) { perror("bind"); return 1; }
    static char buf[N][512]; static struct sockaddr_in peer[N]; static struct iovec iov[N]; static struct mmsghdr m[N];
    for (;;) {
        for (int i = 0; i < N; i++) {
            iov[i] = (struct iovec){ buf[i], sizeof buf[i] };
            m[i].msg_hdr = (struct msghdr){ .msg_name = &peer[i], .msg_namelen = sizeof peer[i], .msg_iov = &iov[i], .msg_iovlen = 1 };
        }
        int n = recvmmsg(fd, m, N, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        for (int i = 0; i < n; i++) { iov[i].iov_len = m[i].msg_len; if (m[i].msg_len > 2) buf[i][2] |= 0x80; }
        sendmmsg(fd, m, n, 0);
    }
}
