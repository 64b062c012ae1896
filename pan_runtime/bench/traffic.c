/* pan-traffic: the compiled tools of `pan bench --experiment capacity`.
 *
 * The capacity experiment needs a sender and a receiver that are never the bottleneck of
 * what they measure, so they are written in C and batch their system calls; the harness
 * (pan_runtime/bench/traffic.py) builds this file with the system compiler into a cache
 * directory the first time it is needed. One executable, three modes:
 *
 *   gen BIND DEST RATE SECONDS FILE [FLOWS]
 *                                    send the datagram held in FILE (a capsule the harness
 *                                    encoded) from BIND to DEST at RATE per second for
 *                                    SECONDS (never longer: short of the rate, it
 *                                    sends less), paced in bursts, each one sendmmsg of UDP
 *                                    GSO messages (the kernel cuts each into separate
 *                                    datagrams; one datagram a message where it refuses GSO);
 *                                    prints "sent N ns ELAPSED calls C gso G" when done (G:
 *                                    the GSO messages among the sends). With FLOWS
 *                                    (1..64), the bursts take turns among FLOWS sockets: BIND
 *                                    and FLOWS-1 more on its address (the ports after BIND's,
 *                                    or ports the kernel picks where those are taken), so a
 *                                    receiver's kernel can spread them over its sockets
 *   sink BIND [plain]                count what arrives at BIND (recvmmsg; with UDP_GRO unless
 *                                    "plain", a GSO message cut into its datagrams); commands
 *                                    on standard input: "expect NAMEHEX LENGTH" names the
 *                                    capsules that count; "count" prints "count VALID OTHER
 *                                    CALLS COALESCED LAST" (COALESCED: messages that held
 *                                    more than one datagram; LAST: the kernel's arrival time,
 *                                    CLOCK_REALTIME ns, of the latest capsule that counted, 0
 *                                    unless stamping); "buffer BYTES" asks that large a
 *                                    receive buffer (SO_RCVBUFFORCE where allowed) and prints
 *                                    "buffer GOT"; "stamp" has the kernel stamp each arrival
 *                                    (SO_TIMESTAMPNS) and prints "stamping" ("stamp refused
 *                                    WHY" where it cannot); exits at end of
 *                                    input
 *   fwd BIND A B                     the C batched forwarder baseline: relay datagrams from A
 *                                    to B and from anyone else to A, up to 64 per recvmmsg
 *                                    and per sendmmsg (never waiting for a batch to fill);
 *                                    prints "ready" once bound; SIGUSR1 prints
 *                                    "calls RECV SEND FORWARDED"
 *
 * Every mode ends when the process that started it ends (PAN_PARENT_PID, as in
 * pan_runtime/net/lifetime.py) and on SIGTERM. Endpoints are IPv4 "a.b.c.d:port".
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <netinet/udp.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "pan_wire.h"

#define BATCH 64
#define MAX_DATAGRAM 65536
#define SOCK_BUFFER (4 << 20)
/* the generator sends a burst every this many nanoseconds at most (fewer at low rates) */
#define QUANTUM_NS 200000LL
#define MAX_FLOWS 64
/* datagrams one UDP GSO message of the generator carries at most (the kernel's limit is 64,
 * and a message holds at most 65 000 bytes) */
#define GSO_SEGMENTS 64
#define GSO_BYTES 65000
#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

static volatile sig_atomic_t report_wanted;

static int fail(const char *what) {
    fprintf(stderr, "pan-traffic: %s: %s\n", what, strerror(errno));
    return 1;
}

static int usage(void) {
    fprintf(stderr,
            "usage: pan-traffic gen BIND DEST RATE SECONDS FILE | sink BIND | fwd BIND A B\n");
    return 2;
}

static int die_with_parent(void) {
    const char *wanted = getenv("PAN_PARENT_PID");
    if (wanted == NULL) return 0;
    if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0) return fail("prctl");
    /* launchers that exec in place keep the starter as our parent; if it is gone already,
     * we were re-parented and must go now */
    if (getppid() == 1 && strcmp(wanted, "1") != 0) return 1;
    return 0;
}

static int parse_endpoint(const char *text, struct sockaddr_in *out) {
    char host[64];
    const char *colon = strrchr(text, ':');
    if (colon == NULL || (size_t)(colon - text) >= sizeof host) return -1;
    memcpy(host, text, (size_t)(colon - text));
    host[colon - text] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || end == colon + 1 || port < 0 || port > 65535) return -1;
    memset(out, 0, sizeof *out);
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    return inet_pton(AF_INET, host, &out->sin_addr) == 1 ? 0 : -1;
}

/* A UDP socket bound to BIND_TEXT with large buffers; -1 after saying why (quietly when
 * QUIET and the address is taken: the caller has another). */
static int open_socket_as(const char *bind_text, int quiet) {
    struct sockaddr_in addr;
    if (parse_endpoint(bind_text, &addr) != 0) {
        fprintf(stderr, "pan-traffic: bad endpoint %s (want a.b.c.d:port)\n", bind_text);
        return -1;
    }
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) {
        fail("socket");
        return -1;
    }
    int size = SOCK_BUFFER;
    /* as large as the machine allows (net.core.rmem_max): the same request cforw makes */
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
        if (!(quiet && (errno == EADDRINUSE || errno == EACCES))) fail(bind_text);
        close(fd);
        return -1;
    }
    return fd;
}

static int open_socket(const char *bind_text) { return open_socket_as(bind_text, 0); }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_until(int64_t t) {
    struct timespec ts = {(time_t)(t / 1000000000LL), (long)(t % 1000000000LL)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
    }
}

static int run_gen(char **argv) {
    struct sockaddr_in dest;
    if (parse_endpoint(argv[1], &dest) != 0) {
        fprintf(stderr, "pan-traffic: bad endpoint %s\n", argv[1]);
        return 2;
    }
    char *end;
    double rate = strtod(argv[2], &end);
    if (*end != '\0' || !(rate > 0.0) || rate > 1e9) {
        fprintf(stderr, "pan-traffic: bad rate %s\n", argv[2]);
        return 2;
    }
    double seconds = strtod(argv[3], &end);
    if (*end != '\0' || !(seconds > 0.0) || seconds > 3600.0) {
        fprintf(stderr, "pan-traffic: bad duration %s\n", argv[3]);
        return 2;
    }
    static unsigned char datagram[MAX_DATAGRAM];
    FILE *f = fopen(argv[4], "rb");
    if (f == NULL) return fail(argv[4]);
    size_t len = fread(datagram, 1, sizeof datagram, f);
    int bad = ferror(f) || len < PAN_WIRE_HEADER_SIZE || fgetc(f) != EOF;
    fclose(f);
    if (bad) {
        fprintf(stderr, "pan-traffic: %s does not hold one capsule of %d..%d bytes\n", argv[4],
                PAN_WIRE_HEADER_SIZE, MAX_DATAGRAM);
        return 2;
    }
    long flows = 1;
    if (argv[5] != NULL) {
        flows = strtol(argv[5], &end, 10);
        if (*end != '\0' || flows < 1 || flows > MAX_FLOWS) {
            fprintf(stderr, "pan-traffic: bad flow count %s (1..%d)\n", argv[5], MAX_FLOWS);
            return 2;
        }
    }
    int fds[MAX_FLOWS];
    int fd = open_socket(argv[0]);
    if (fd < 0) return 1;
    fds[0] = fd;
    /* the other flows: the same address and the next ports, so that every run of the generator
     * is the same flows (a middle that learns its neighbours from them knows them from the
     * warm-up on); a port the kernel picks where one is taken */
    const char *colon = strrchr(argv[0], ':'); /* there is one: open_socket parsed BIND */
    int host_len = (int)(colon - argv[0]);
    long port = strtol(colon + 1, NULL, 10);
    char any[64];
    snprintf(any, sizeof any, "%.*s:0", host_len, argv[0]);
    for (long k = 1; k < flows; k++) {
        char next[64];
        snprintf(next, sizeof next, "%.*s:%ld", host_len, argv[0], port + k);
        fds[k] = port > 0 && port + k <= 65535 ? open_socket_as(next, 1) : -1;
        if (fds[k] < 0) fds[k] = open_socket(any);
        if (fds[k] < 0) {
            while (k-- > 0) close(fds[k]);
            return 1;
        }
    }
    (void)prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake when asked: pacing is in µs */
    /* a burst's datagrams go as UDP GSO messages where the kernel takes them (each message the
     * same datagram SEG times over, cut by the kernel into SEG datagrams: the burst crosses the
     * sender's stack once), else one datagram a message; the receivers see the same datagrams */
    int seg = (int)(GSO_BYTES / len);
    if (seg > GSO_SEGMENTS) seg = GSO_SEGMENTS;
    if (seg < 1) seg = 1;
    static struct iovec iov[GSO_SEGMENTS];
    for (int i = 0; i < GSO_SEGMENTS; i++) iov[i] = (struct iovec){datagram, len};
    union {
        char buf[CMSG_SPACE(sizeof(uint16_t))];
        struct cmsghdr align;
    } ctl[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    memset(ctl, 0, sizeof ctl);
    for (int i = 0; i < BATCH; i++) {
        msgs[i].msg_hdr.msg_name = &dest;
        msgs[i].msg_hdr.msg_namelen = sizeof dest;
        msgs[i].msg_hdr.msg_iov = iov;
        msgs[i].msg_hdr.msg_iovlen = 1;
        struct cmsghdr *c = (struct cmsghdr *)ctl[i].buf;
        c->cmsg_level = SOL_UDP;
        c->cmsg_type = UDP_SEGMENT;
        c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
        uint16_t size = (uint16_t)len;
        memcpy(CMSG_DATA(c), &size, sizeof size);
    }
    int gso = seg > 1 && len <= 65535;
    int segs[BATCH];
    long long total = (long long)(rate * seconds + 0.5);
    if (total < 1) total = 1;
    long long burst = (long long)(rate * (double)QUANTUM_NS / 1e9);
    if (burst < 1) burst = 1;
    if (burst > (long long)BATCH * (gso ? seg : 1)) burst = (long long)BATCH * (gso ? seg : 1);
    long long sent = 0, calls = 0, gso_msgs = 0;
    int64_t start = now_ns();
    int64_t stop_at = start + (int64_t)(seconds * 1e9);
    for (;;) {
        /* capsule k is due at start + k / rate; send what is due, then sleep until the next burst
         * is. The trial lasts SECONDS whatever was sent: a generator short of the rate sends less */
        int64_t t = now_ns();
        if (sent >= total || t >= stop_at) break;
        long long due = (long long)((double)(t - start) * rate / 1e9) + 1;
        if (due > total) due = total;
        if (due <= sent) {
            long long next = sent + burst < total ? sent + burst : total;
            sleep_until(start + (int64_t)((double)(next - 1) * 1e9 / rate));
            continue;
        }
        long long want = due - sent;
        unsigned int n = 0;
        for (long long left = want; left > 0 && n < BATCH; n++) {
            int k = gso ? (int)(left < seg ? left : seg) : 1;
            segs[n] = k;
            msgs[n].msg_hdr.msg_iovlen = (size_t)k;
            msgs[n].msg_hdr.msg_control = gso && k > 1 ? ctl[n].buf : NULL;
            msgs[n].msg_hdr.msg_controllen = gso && k > 1 ? sizeof ctl[n].buf : 0;
            left -= k;
        }
        int r = sendmmsg(fds[calls % flows], msgs, n, 0);
        calls++;
        if (r < 0) {
            if (gso && (errno == EIO || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOPROTOOPT)) {
                gso = 0; /* the kernel or the route refuses GSO: one datagram a message from now on */
                burst = burst > BATCH ? BATCH : burst;
                continue;
            }
            if (errno == EINTR || errno == ENOBUFS || errno == EAGAIN || errno == ECONNREFUSED) continue;
            int saved = errno;
            for (long k = 0; k < flows; k++) close(fds[k]);
            errno = saved;
            return fail("sendmmsg");
        }
        for (int i = 0; i < r; i++) sent += segs[i], gso_msgs += segs[i] > 1;
    }
    int64_t elapsed = now_ns() - start;
    for (long k = 0; k < flows; k++) close(fds[k]);
    printf("sent %lld ns %lld calls %lld gso %lld\n", sent, (long long)elapsed, calls, gso_msgs);
    return fflush(stdout) == 0 ? 0 : 1;
}

static int hex_nibble(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* "expect NAMEHEX LENGTH": 0 and the name and length, or -1 */
static int parse_expect(const char *line, unsigned char name[PAN_WIRE_NAME_SIZE], size_t *length) {
    const char *p = line + strlen("expect ");
    for (int i = 0; i < PAN_WIRE_NAME_SIZE; i++) {
        int hi = hex_nibble(p[2 * i]), lo = hi < 0 ? -1 : hex_nibble(p[2 * i + 1]);
        if (hi < 0 || lo < 0) return -1;
        name[i] = (unsigned char)(hi << 4 | lo);
    }
    p += 2 * PAN_WIRE_NAME_SIZE;
    if (*p != ' ') return -1;
    char *end;
    long n = strtol(p + 1, &end, 10);
    if ((*end != '\n' && *end != '\0') || n < PAN_WIRE_HEADER_SIZE || n > MAX_DATAGRAM) return -1;
    *length = (size_t)n;
    return 0;
}

/* The size of each datagram a message read with UDP_GRO holds (its control message), or 0:
 * the message is one datagram. */
static size_t gro_size(struct msghdr *h) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
            int size;
            memcpy(&size, CMSG_DATA(c), sizeof size);
            return size > 0 ? (size_t)size : 0;
        }
    }
    return 0;
}

/* The kernel's arrival time (CLOCK_REALTIME ns) a message read with SO_TIMESTAMPNS carries, or 0. */
static int64_t arrival_ns(struct msghdr *h) {
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
            c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
            struct timespec ts;
            memcpy(&ts, CMSG_DATA(c), sizeof ts);
            return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
        }
    }
    return 0;
}

/* Ask for a receive buffer of BYTES (beyond net.core.rmem_max where the process may, as a
 * drain's sink must hold all it drains); what the socket has afterwards. */
static long long ask_buffer(int fd, long long bytes) {
    int size = bytes > INT_MAX / 2 ? INT_MAX / 2 : (int)bytes;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    int got = 0;
    socklen_t len = sizeof got;
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &got, &len) != 0) return -1;
    return got;
}

static int run_sink(char **argv, int gro) {
    int fd = open_socket(argv[0]);
    if (fd < 0) return 1;
    /* with UDP_GRO the kernel queues a sender's GSO message whole (and may coalesce datagrams
     * of one flow): one read brings many datagrams, each counted below as if read alone */
    int on = 1;
    if (gro && setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof on) != 0) gro = 0;
    static unsigned char bufs[BATCH][MAX_DATAGRAM];
    union {
        char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(sizeof(struct timespec))];
        struct cmsghdr align;
    } ctl[BATCH];
    int stamping = 0;
    int64_t last = 0;
    struct iovec iovs[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iovs[i].iov_base = bufs[i];
        iovs[i].iov_len = MAX_DATAGRAM;
        msgs[i].msg_hdr.msg_iov = &iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned char name[PAN_WIRE_NAME_SIZE] = {0};
    size_t length = 0;
    int expecting = 0;
    unsigned long long valid = 0, other = 0, calls = 0, coalesced = 0;
    char line[256];
    size_t have = 0;
    struct pollfd fds[2] = {{fd, POLLIN, 0}, {STDIN_FILENO, POLLIN, 0}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR) continue;
            close(fd);
            return fail("poll");
        }
        if (fds[0].revents & POLLIN) {
            for (;;) {
                for (int i = 0; i < BATCH; i++) {
                    msgs[i].msg_hdr.msg_control = gro || stamping ? ctl[i].buf : NULL;
                    msgs[i].msg_hdr.msg_controllen = gro || stamping ? sizeof ctl[i].buf : 0;
                }
                int r = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
                calls++;
                if (r < 0) {
                    if (errno == EAGAIN || errno == EINTR || errno == ECONNREFUSED) break;
                    close(fd);
                    return fail("recvmmsg");
                }
                for (int i = 0; i < r; i++) {
                    size_t n = msgs[i].msg_len, seg = gro ? gro_size(&msgs[i].msg_hdr) : 0;
                    if (seg == 0 || seg >= n) seg = n; /* one datagram */
                    else coalesced++;
                    if (n == 0) {
                        other++;
                        continue;
                    }
                    unsigned long long before = valid;
                    /* each datagram the message holds (the last one may be shorter) */
                    for (size_t at = 0; at < n; at += seg) {
                        const unsigned char *d = bufs[i] + at;
                        size_t len = n - at < seg ? n - at : seg;
                        /* a capsule of the flow: its header is well formed, it names the expected
                         * code object and it is as long as what the generator sent (the hop limit
                         * changes) */
                        if (expecting && len == length && d[PAN_WIRE_VERSION_OFFSET] == PAN_WIRE_VERSION &&
                            (d[PAN_WIRE_FLAGS_OFFSET] & ~PAN_WIRE_KNOWN_FLAGS) == 0 &&
                            d[PAN_WIRE_RESERVED_OFFSET] == 0 &&
                            memcmp(d + PAN_WIRE_NAME_OFFSET, name, PAN_WIRE_NAME_SIZE) == 0) {
                            valid++;
                        } else {
                            other++;
                        }
                    }
                    if (stamping && valid != before) {
                        int64_t t = arrival_ns(&msgs[i].msg_hdr);
                        if (t > last) last = t;
                    }
                }
                if (r < BATCH) break;
            }
        }
        if (fds[1].revents & (POLLIN | POLLHUP)) {
            ssize_t r = read(STDIN_FILENO, line + have, sizeof line - 1 - have);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) break; /* the harness is done */
            have += (size_t)r;
            line[have] = '\0';
            char *nl;
            while ((nl = strchr(line, '\n')) != NULL) {
                *nl = '\0';
                if (strcmp(line, "count") == 0) {
                    printf("count %llu %llu %llu %llu %lld\n", valid, other, calls, coalesced, (long long)last);
                } else if (strncmp(line, "buffer ", 7) == 0 && atoll(line + 7) > 0) {
                    printf("buffer %lld\n", ask_buffer(fd, atoll(line + 7)));
                } else if (strcmp(line, "stamp") == 0) {
                    int one = 1;
                    if (setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) == 0) {
                        stamping = 1;
                        printf("stamping\n");
                    } else {
                        printf("stamp refused %s\n", strerror(errno));
                    }
                } else if (strncmp(line, "expect ", 7) == 0 && parse_expect(line, name, &length) == 0) {
                    expecting = 1;
                    printf("expecting\n");
                } else {
                    printf("error unknown command\n");
                }
                fflush(stdout);
                size_t used = (size_t)(nl + 1 - line);
                memmove(line, nl + 1, have - used + 1);
                have -= used;
            }
            if (have == sizeof line - 1) break; /* a line longer than any command */
        }
    }
    close(fd);
    return 0;
}

static void on_usr1(int sig) {
    (void)sig;
    report_wanted = 1;
}

static int run_fwd(char **argv) {
    struct sockaddr_in a, b;
    if (parse_endpoint(argv[1], &a) != 0 || parse_endpoint(argv[2], &b) != 0) {
        fprintf(stderr, "pan-traffic: bad endpoint %s or %s\n", argv[1], argv[2]);
        return 2;
    }
    int fd = open_socket(argv[0]);
    if (fd < 0) return 1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: a blocked recvmmsg returns to report */
    if (sigemptyset(&sa.sa_mask) != 0 || sigaction(SIGUSR1, &sa, NULL) != 0) {
        close(fd);
        return fail("sigaction");
    }
    static unsigned char bufs[BATCH][MAX_DATAGRAM];
    struct iovec iovs[BATCH];
    struct sockaddr_in peers[BATCH];
    struct mmsghdr in[BATCH], out[BATCH];
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    for (int i = 0; i < BATCH; i++) {
        iovs[i].iov_base = bufs[i];
        iovs[i].iov_len = MAX_DATAGRAM;
        in[i].msg_hdr.msg_iov = &iovs[i];
        in[i].msg_hdr.msg_iovlen = 1;
        in[i].msg_hdr.msg_name = &peers[i];
        out[i].msg_hdr.msg_iovlen = 1;
    }
    unsigned long long recv_calls = 0, send_calls = 0, forwarded = 0;
    printf("ready\n");
    fflush(stdout);
    for (;;) {
        if (report_wanted) {
            report_wanted = 0;
            printf("calls %llu %llu %llu\n", recv_calls, send_calls, forwarded);
            fflush(stdout);
        }
        for (int i = 0; i < BATCH; i++) {
            iovs[i].iov_len = MAX_DATAGRAM;
            in[i].msg_hdr.msg_namelen = sizeof peers[i];
        }
        /* MSG_WAITFORONE: block for the first datagram only, then take what is already there */
        int r = recvmmsg(fd, in, BATCH, MSG_WAITFORONE, NULL);
        recv_calls++;
        if (r < 0) {
            if (errno == EINTR || errno == ECONNREFUSED) continue;
            close(fd);
            return fail("recvmmsg");
        }
        for (int i = 0; i < r; i++) {
            int from_a = peers[i].sin_addr.s_addr == a.sin_addr.s_addr && peers[i].sin_port == a.sin_port;
            iovs[i].iov_len = in[i].msg_len;
            out[i].msg_hdr.msg_iov = &iovs[i];
            out[i].msg_hdr.msg_name = from_a ? &b : &a;
            out[i].msg_hdr.msg_namelen = sizeof a;
        }
        int done = 0;
        while (done < r) {
            int s = sendmmsg(fd, out + done, (unsigned int)(r - done), 0);
            send_calls++;
            if (s < 0) {
                if (errno == EINTR) continue;
                if (errno == ECONNREFUSED || errno == ENOBUFS || errno == EAGAIN) {
                    done++; /* that datagram is lost, as a kernel router would lose it */
                    continue;
                }
                close(fd);
                return fail("sendmmsg");
            }
            done += s;
            forwarded += (unsigned long long)s;
        }
    }
}

int main(int argc, char **argv) {
    if (die_with_parent() != 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    if ((argc == 7 || argc == 8) && strcmp(argv[1], "gen") == 0) return run_gen(argv + 2);
    if (argc == 3 && strcmp(argv[1], "sink") == 0) return run_sink(argv + 2, 1);
    if (argc == 4 && strcmp(argv[1], "sink") == 0 && strcmp(argv[3], "plain") == 0) return run_sink(argv + 2, 0);
    if (argc == 5 && strcmp(argv[1], "fwd") == 0) return run_fwd(argv + 2);
    return usage();
}
