/*
 * hold_sockets — hold N established loopback TCP connections to one listener.
 *
 * Usage: hold_sockets [-p PORT] [-n CONNS] [-t LIFETIME_S] [-b BYTES]
 *                     [-a PER_ACCEPTOR] [-c PER_CLIENT]
 *
 *   -p PORT         listener port on 127.0.0.1 (default 29417)
 *   -n CONNS        established connections to hold (default 54000)
 *   -t LIFETIME_S   exit by itself after this many seconds (default 600)
 *   -b BYTES        bytes sent each way on each connection (default 1024, 0 = none)
 *   -a PER_ACCEPTOR accepted connections held per acceptor process (default 9000)
 *   -c PER_CLIENT   connected sockets held per client process (default 18000)
 *
 * Layout (the open-file limit is 20,000 per process and cannot be raised,
 * and on loopback each connection is two sockets):
 *
 *   main process     creates the listener (127.0.0.1:PORT), forks the others,
 *                    prints "ready N" once every worker has reported, then
 *                    sleeps until SIGTERM/SIGINT or LIFETIME_S.
 *   acceptor i       shares the listener, accept()s up to PER_ACCEPTOR conns.
 *   client k         binds source address 127.0.0.(k+1) (so each client has
 *                    its own ~28k ephemeral-port space) and connect()s up to
 *                    PER_CLIENT conns.
 *
 * Every socket gets SO_LINGER {1, 0}: when the holder goes away the
 * connections are reset, leaving no TIME_WAIT sockets behind for the next
 * run. Workers die with the main process (PR_SET_PDEATHSIG) and each has its
 * own alarm() as a second guard, so nothing outlives LIFETIME_S + 10 s.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_WORKERS 64

static int opt_port = 29417;
static long opt_conns = 54000;
static int opt_lifetime = 600;
static int opt_bytes = 1024;
static long opt_per_acceptor = 9000;
static long opt_per_client = 18000;

static pid_t workers[MAX_WORKERS];
static int nworkers;
static volatile sig_atomic_t stop_flag;

static void die(const char *what) {
    fprintf(stderr, "hold_sockets[%d]: %s: %s\n", (int)getpid(), what, strerror(errno));
    exit(1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void set_linger0(int fd) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
}

static void set_timeout(int fd, int seconds) {
    struct timeval tv = {.tv_sec = seconds, .tv_usec = 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Read exactly n bytes (bounded by SO_RCVTIMEO); returns bytes read. */
static int read_n(int fd, char *buf, int n) {
    int got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, (size_t)(n - got));
        if (r > 0) got += (int)r;
        else if (r < 0 && errno == EINTR) continue;
        else break;
    }
    return got;
}

static void write_n(int fd, const char *buf, int n) {
    int put = 0;
    while (put < n) {
        ssize_t w = write(fd, buf + put, (size_t)(n - put));
        if (w > 0) put += (int)w;
        else if (w < 0 && errno == EINTR) continue;
        else break;
    }
}

/* Tell the main process how many connections this worker holds. */
static void report(int pipe_fd, char kind, long count) {
    char line[64];
    int len = snprintf(line, sizeof line, "%c %ld %d\n", kind, count, (int)getpid());
    write_n(pipe_fd, line, len);
}

/* Worker life after its job is done: sit until the main process goes away. */
static void idle_forever(void) {
    for (;;) pause();
}

static void worker_common(int lifetime) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    alarm((unsigned)lifetime + 10); /* SIGALRM default action terminates */
}

static void acceptor(int lfd, long quota, int pipe_fd) {
    char *buf = opt_bytes > 0 ? calloc(1, (size_t)opt_bytes) : NULL;
    long held = 0;
    while (held < quota) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            die("accept");
        }
        set_linger0(fd);
        if (opt_bytes > 0) {
            set_timeout(fd, 10);
            read_n(fd, buf, opt_bytes);  /* the client's request */
            write_n(fd, buf, opt_bytes); /* a reply, left for the client to drain */
        }
        held++;
    }
    close(lfd); /* the main process keeps the listener open */
    free(buf);
    report(pipe_fd, 'A', held);
    idle_forever();
}

static void client(int index, long quota, int pipe_fd) {
    char src[32];
    snprintf(src, sizeof src, "127.0.0.%d", index + 1);
    struct sockaddr_in local = {.sin_family = AF_INET, .sin_port = 0};
    struct sockaddr_in remote = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt_port)};
    inet_pton(AF_INET, src, &local.sin_addr);
    inet_pton(AF_INET, "127.0.0.1", &remote.sin_addr);

    char *buf = opt_bytes > 0 ? malloc((size_t)opt_bytes) : NULL;
    if (buf) memset(buf, 'x', (size_t)opt_bytes);
    int *fds = calloc((size_t)quota, sizeof *fds);
    long held = 0;
    int failures = 0;
    while (held < quota) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) die("socket");
        int one = 1;
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind source address");
        set_linger0(fd);
        set_timeout(fd, 10);
        if (connect(fd, (struct sockaddr *)&remote, sizeof remote) < 0) {
            int e = errno;
            close(fd);
            if (++failures > 100) {
                errno = e;
                die("connect (100 failures)");
            }
            usleep(10000);
            continue;
        }
        if (buf) write_n(fd, buf, opt_bytes);
        fds[held++] = fd;
    }
    /* Drain the replies so the receive queues are empty while we hold. */
    if (buf) {
        for (long i = 0; i < held; i++) read_n(fds[i], buf, opt_bytes);
    }
    free(buf);
    report(pipe_fd, 'C', held);
    idle_forever();
}

static void kill_workers(void) {
    for (int i = 0; i < nworkers; i++)
        if (workers[i] > 0) kill(workers[i], SIGKILL);
    for (int i = 0; i < nworkers; i++)
        if (workers[i] > 0) waitpid(workers[i], NULL, 0);
}

static long arg_long(const char *s, const char *name) {
    char *end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < 0) {
        fprintf(stderr, "hold_sockets: bad %s: %s\n", name, s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    int c;
    while ((c = getopt(argc, argv, "p:n:t:b:a:c:h")) != -1) {
        switch (c) {
        case 'p': opt_port = (int)arg_long(optarg, "port"); break;
        case 'n': opt_conns = arg_long(optarg, "conns"); break;
        case 't': opt_lifetime = (int)arg_long(optarg, "lifetime"); break;
        case 'b': opt_bytes = (int)arg_long(optarg, "bytes"); break;
        case 'a': opt_per_acceptor = arg_long(optarg, "per-acceptor"); break;
        case 'c': opt_per_client = arg_long(optarg, "per-client"); break;
        default:
            fprintf(stderr, "usage: %s [-p PORT] [-n CONNS] [-t LIFETIME_S] [-b BYTES] "
                            "[-a PER_ACCEPTOR] [-c PER_CLIENT]\n", argv[0]);
            return 2;
        }
    }
    if (opt_port < 1 || opt_port > 65535 || opt_per_acceptor < 1 || opt_per_client < 1 ||
        opt_per_acceptor > 19000 || opt_per_client > 19000 || opt_per_client > 28000 ||
        opt_lifetime < 1) {
        fprintf(stderr, "hold_sockets: option out of range\n");
        return 2;
    }
    long nacc = (opt_conns + opt_per_acceptor - 1) / opt_per_acceptor;
    long ncli = (opt_conns + opt_per_client - 1) / opt_per_client;
    if (nacc + ncli > MAX_WORKERS || ncli > 254) {
        fprintf(stderr, "hold_sockets: too many workers (%ld acceptors, %ld clients)\n", nacc, ncli);
        return 2;
    }
    raise_nofile();
    setvbuf(stdout, NULL, _IOLBF, 0);

    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)opt_port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind listener");
    if (listen(lfd, 4096) < 0) die("listen");

    int pfd[2];
    if (pipe(pfd) < 0) die("pipe");

    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    alarm((unsigned)opt_lifetime);

    double t0 = now_s();
    for (long i = 0; i < nacc; i++) {
        long quota = opt_conns - i * opt_per_acceptor;
        if (quota > opt_per_acceptor) quota = opt_per_acceptor;
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            close(pfd[0]);
            worker_common(opt_lifetime);
            acceptor(lfd, quota, pfd[1]);
        }
        workers[nworkers++] = pid;
    }
    for (long k = 0; k < ncli; k++) {
        long quota = opt_conns - k * opt_per_client;
        if (quota > opt_per_client) quota = opt_per_client;
        pid_t pid = fork();
        if (pid < 0) die("fork");
        if (pid == 0) {
            close(pfd[0]);
            close(lfd);
            worker_common(opt_lifetime);
            client((int)k, quota, pfd[1]);
        }
        workers[nworkers++] = pid;
    }
    close(pfd[1]);
    fprintf(stderr, "hold_sockets: pid %d, port %d, %ld conns, %ld acceptors, %ld clients\n",
            (int)getpid(), opt_port, opt_conns, nacc, ncli);

    /* Collect the reports. */
    long accepted = 0, connected = 0;
    int reports = 0;
    FILE *in = fdopen(pfd[0], "r");
    char line[128];
    while (reports < nworkers && !stop_flag) {
        if (!fgets(line, sizeof line, in)) {
            if (errno == EINTR && !stop_flag) { clearerr(in); continue; }
            break;
        }
        char kind;
        long count;
        if (sscanf(line, "%c %ld", &kind, &count) == 2) {
            if (kind == 'A') accepted += count;
            else connected += count;
            reports++;
        }
    }
    if (reports < nworkers || accepted != opt_conns || connected != opt_conns) {
        fprintf(stderr, "hold_sockets: not ready (%d/%d reports, %ld accepted, %ld connected)\n",
                reports, nworkers, accepted, connected);
        kill_workers();
        return 1;
    }
    printf("ready %ld\n", opt_conns);
    fprintf(stderr, "hold_sockets: established %ld in %.2f s\n", opt_conns, now_s() - t0);

    while (!stop_flag) pause();
    kill_workers();
    return 0;
}
