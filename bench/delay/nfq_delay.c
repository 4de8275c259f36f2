/*
 * nfq_delay: a propagation-delay stage for a Linux router namespace.
 *
 * sch_netem is not built into the bench kernel, so packets are delayed in
 * user space instead: an `iptables-nft ... -j NFQUEUE --queue-num Q` rule
 * hands every forwarded packet to this program, which notes its arrival time
 * and gives the ACCEPT verdict DELAY microseconds later. Only packet metadata
 * is copied to user space (NFQNL_COPY_META), the payload stays in the kernel.
 *
 * The delay is the same for every packet, so due times are in arrival order:
 * a FIFO ring is enough, and one batch verdict ("accept every id up to N")
 * releases all packets that are due at once. The loop sleeps in ppoll() until
 * the next packet is due or a new one arrives; the timer slack is set to
 * 1 us so wake-ups are on time. Good for some 50k packets/s on one core.
 *
 *   nfq_delay QUEUE DELAY_US
 *
 * Prints "ready" on stdout once the queue is bound, counts on SIGTERM/SIGINT.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING (1u << 20) /* packets held at most (power of two) */

struct held {
    uint32_t id;
    uint64_t due_ns;
};

static struct held ring[RING];
static uint32_t head, tail; /* tail - head = packets held */
static uint64_t delay_ns;
static uint64_t n_in, n_out, n_overflow, max_held;
static volatile sig_atomic_t stop;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg,
                     struct nfq_data *nfa, void *data)
{
    (void)msg;
    (void)data;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (!ph)
        return 0;
    uint32_t id = ntohl(ph->packet_id);
    n_in++;
    if (tail - head >= RING) { /* cannot hold it: pass it on undelayed */
        n_overflow++;
        return nfq_set_verdict(qh, id, NF_ACCEPT, 0, NULL);
    }
    ring[tail & (RING - 1)] = (struct held){id, now_ns() + delay_ns};
    tail++;
    if (tail - head > max_held)
        max_held = tail - head;
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s QUEUE DELAY_US\n", argv[0]);
        return 2;
    }
    int queue = atoi(argv[1]);
    delay_ns = strtoull(argv[2], NULL, 10) * 1000ull;

    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    struct nfq_handle *h = nfq_open();
    if (!h) {
        perror("nfq_open");
        return 1;
    }
    struct nfq_q_handle *qh = nfq_create_queue(h, queue, on_packet, NULL);
    if (!qh) {
        perror("nfq_create_queue");
        return 1;
    }
    if (nfq_set_mode(qh, NFQNL_COPY_META, 0) < 0) {
        perror("nfq_set_mode");
        return 1;
    }
    nfq_set_queue_maxlen(qh, RING);
    int fd = nfq_fd(h);
    nfnl_rcvbufsiz(nfq_nfnlh(h), 64 * 1024 * 1024);
    int one = 1;
    setsockopt(fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
    printf("ready\n");
    fflush(stdout);

    static char buf[65536] __attribute__((aligned));
    while (!stop) {
        struct timespec ts, *tsp = NULL;
        if (tail != head) {
            uint64_t now = now_ns(), due = ring[head & (RING - 1)].due_ns;
            uint64_t wait = due > now ? due - now : 0;
            ts.tv_sec = wait / 1000000000ull;
            ts.tv_nsec = wait % 1000000000ull;
            tsp = &ts;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = ppoll(&pfd, 1, tsp, NULL);
        if (r < 0 && errno != EINTR) {
            perror("ppoll");
            break;
        }
        if (r > 0) {
            for (;;) {
                ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (n <= 0)
                    break;
                nfq_handle_packet(h, buf, (int)n);
            }
        }
        uint64_t now = now_ns();
        uint32_t last = 0;
        int any = 0;
        while (tail != head && ring[head & (RING - 1)].due_ns <= now) {
            last = ring[head & (RING - 1)].id;
            head++;
            n_out++;
            any = 1;
        }
        if (any)
            nfq_set_verdict_batch(qh, last, NF_ACCEPT);
    }
    /* Release what is still held rather than dropping it. */
    if (tail != head)
        nfq_set_verdict_batch(qh, ring[(tail - 1) & (RING - 1)].id, NF_ACCEPT);
    fprintf(stderr, "nfq_delay: queue %d: %llu packets, max held %llu, overflow %llu\n",
            queue, (unsigned long long)n_in, (unsigned long long)max_held,
            (unsigned long long)n_overflow);
    nfq_destroy_queue(qh);
    nfq_close(h);
    return 0;
}
