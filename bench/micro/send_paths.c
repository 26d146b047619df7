/* How fast can one thread hand 200-byte datagrams for 1,000 destinations to the kernel, by
 * each way the relay could send them? No crypto, no receive: the bare send half, to choose
 * between the ways the forwarding loop could use (bench/RESULTS.md, "Connected sockets and
 * GSO"; docs/ARCHITECTURE.md, "How copies leave the host").
 *
 *   0  sendmmsg of 256 messages from one unconnected socket (the loop's way)
 *   1  send() on a connected socket per destination, all bound to one port (SO_REUSEPORT)
 *   2  io_uring: 256 SEND requests a submission, on the same connected sockets as registered
 *      files (one system call per 256, no route lookup per datagram)
 *   3  sendmmsg of 32 messages of 8 segments each (UDP GSO), 1,000 destinations
 *
 * Build and run as root, sending into an ifb device that frees each datagram (the send-only
 * path of bench/sendonly.py, set up by hand):
 *
 *   apt-get install liburing-dev
 *   gcc -O2 -o /tmp/send_paths bench/micro/send_paths.c -luring
 *   ip netns add sp && ip -n sp link set lo up && ip -n sp link add d0 type ifb
 *   ip -n sp link set d0 up txqueuelen 10000 gso_max_segs 1
 *   ip -n sp addr add 10.201.0.1/16 dev d0
 *   for round in 1 2 3 4 5; do for way in 0 1 2 3; do
 *       ip netns exec sp /tmp/send_paths $way 400000; done; done
 *   ip netns del sp
 *
 * Each run prints the way and datagrams per second. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <liburing.h>
#include <netinet/udp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define DESTINATIONS 1000
#define BATCH 256
#define SIZE 200
#define SEGMENTS 8

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int bound_socket(const struct sockaddr_in *local) {
    int one = 1, fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, (const struct sockaddr *)local, sizeof *local) != 0) {
        perror("socket");
        exit(1);
    }
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s WAY(0-3) DATAGRAMS\n", argv[0]);
        return 2;
    }
    int way = atoi(argv[1]);
    long total = atol(argv[2]);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = htons(7100)};
    inet_pton(AF_INET, "10.201.0.1", &local.sin_addr);
    int media = bound_socket(&local);
    static struct sockaddr_in to[DESTINATIONS];
    static int connected[DESTINATIONS];
    for (int i = 0; i < DESTINATIONS; i++) {
        to[i] = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons(6000)};
        to[i].sin_addr.s_addr = htonl((10u << 24) | (201u << 16) | (uint32_t)(i + 2));
        if (way == 1 || way == 2) {
            connected[i] = bound_socket(&local);
            if (connect(connected[i], (const struct sockaddr *)&to[i], sizeof to[i]) != 0) {
                perror("connect");
                return 1;
            }
        }
    }
    struct io_uring ring;
    if (way == 2 && (io_uring_queue_init(2 * BATCH, &ring, 0) < 0 ||
                     io_uring_register_files(&ring, connected, DESTINATIONS) < 0)) {
        fprintf(stderr, "io_uring unavailable\n");
        return 1;
    }
    static char payload[BATCH][SIZE];
    static struct mmsghdr msg[BATCH];
    static struct iovec iov[BATCH];
    static char control[BATCH][CMSG_SPACE(sizeof(uint16_t))];
    long sent = 0;
    double start = now();
    while (sent < total) {
        if (way == 0 || way == 3) {
            int per = way == 3 ? SEGMENTS : 1, messages = BATCH / per;
            memset(msg, 0, sizeof msg);
            for (int k = 0; k < BATCH; k++) {
                iov[k] = (struct iovec){.iov_base = payload[k], .iov_len = SIZE};
            }
            for (int m = 0; m < messages; m++) {
                struct msghdr *h = &msg[m].msg_hdr;
                h->msg_name = &to[(sent / per + m) % DESTINATIONS];
                h->msg_namelen = sizeof to[0];
                h->msg_iov = &iov[m * per];
                h->msg_iovlen = (size_t)per;
                if (per > 1) {
                    uint16_t segment = SIZE;
                    h->msg_control = control[m];
                    h->msg_controllen = sizeof control[m];
                    struct cmsghdr *c = CMSG_FIRSTHDR(h);
                    c->cmsg_level = SOL_UDP;
                    c->cmsg_type = UDP_SEGMENT;
                    c->cmsg_len = CMSG_LEN(sizeof segment);
                    memcpy(CMSG_DATA(c), &segment, sizeof segment);
                }
            }
            int n = sendmmsg(media, msg, (unsigned)messages, 0);
            if (n < 0) {
                perror("sendmmsg");
                return 1;
            }
            sent += (long)n * per;
        } else if (way == 1) {
            for (int k = 0; k < BATCH; k++) {
                if (send(connected[(sent + k) % DESTINATIONS], payload[k], SIZE, 0) < 0) {
                    perror("send");
                    return 1;
                }
            }
            sent += BATCH;
        } else {
            for (int k = 0; k < BATCH; k++) {
                struct io_uring_sqe *e = io_uring_get_sqe(&ring);
                io_uring_prep_send(e, (int)((sent + k) % DESTINATIONS), payload[k], SIZE, 0);
                e->flags |= IOSQE_FIXED_FILE;
            }
            if (io_uring_submit_and_wait(&ring, BATCH) < 0) {
                fprintf(stderr, "io_uring_submit_and_wait failed\n");
                return 1;
            }
            struct io_uring_cqe *cqe;
            unsigned head, seen = 0;
            io_uring_for_each_cqe(&ring, head, cqe) {
                if (cqe->res < 0) {
                    fprintf(stderr, "send: %s\n", strerror(-cqe->res));
                    return 1;
                }
                seen++;
            }
            io_uring_cq_advance(&ring, seen);
            sent += BATCH;
        }
    }
    printf("way %d: %.0f datagrams/s\n", way, (double)sent / (now() - start));
    return 0;
}
