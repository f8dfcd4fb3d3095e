/*
 * floor — what the two phases of `portwatch ports --all` cost when done in plain C, to tell
 * portwatch's own overhead from the kernel's.
 *
 *   floor [-r RUNS] [-t THREADS] [-m MODE]   (MODE: one case by its name below, e.g. dump-tcp)
 *
 * Prints the median over RUNS (default 5) of:
 *   dump-tcp      sock_diag dump of all TCP sockets (AF_INET then AF_INET6) with
 *                 INET_DIAG_INFO + INET_DIAG_SKMEMINFO, the attributes portwatch asks for
 *   dump-tcp4     the same, AF_INET only (how much the AF_INET6 pass costs)
 *   dump-tcp-bare AF_INET + AF_INET6 without extensions (what `ss -tan` asks for)
 *   walk-1        readdir + readlinkat of every /proc/PID/fd entry, one thread
 *   walk-N        the same with the pids split over THREADS threads (default nproc)
 *   stat-1        fstatat (following the link) instead of readlinkat, one thread
 *   dense-N       readlinkat by number from fd 0 until the fd directory's st_size (the number of
 *                 open fds since Linux 6.2) links were seen, without listing it; THREADS threads
 *                 (the technique portwatch's full walk uses)
 *   dump+walk-N   dump-tcp on one thread while THREADS threads do dense-N, wall time of the
 *                 whole: the least a process-attributed `ports --all` can cost, in C
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ------------------------------------------------------------------ sock_diag */

static long dump_family(int fd, int family, uint8_t ext, char *buf, size_t cap) {
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 req;
    } msg = {0};
    msg.nlh.nlmsg_len = sizeof msg;
    msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
    msg.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.nlh.nlmsg_seq = 1;
    msg.req.sdiag_family = (uint8_t)family;
    msg.req.sdiag_protocol = IPPROTO_TCP;
    msg.req.idiag_states = ~0u;
    msg.req.idiag_ext = ext;
    struct sockaddr_nl nl = {.nl_family = AF_NETLINK};
    if (sendto(fd, &msg, sizeof msg, 0, (struct sockaddr *)&nl, sizeof nl) < 0) return -1;
    long count = 0;
    for (;;) {
        ssize_t n = recv(fd, buf, cap, 0);
        if (n <= 0) return -1;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE) return count;
            if (h->nlmsg_type == NLMSG_ERROR) return -1;
            count++;
        }
    }
}

static double dump_once(int v6, uint8_t ext, long *count) {
    static char buf[256 * 1024];
    double t0 = now_ms();
    int fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    int rcv = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    *count = dump_family(fd, AF_INET, ext, buf, sizeof buf);
    if (v6) *count += dump_family(fd, AF_INET6, ext, buf, sizeof buf);
    close(fd);
    return now_ms() - t0;
}

/* ------------------------------------------------------------------ /proc walk */

static int *pids;
static int npids;

static void list_pids(void) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    int cap = 4096;
    pids = malloc(sizeof *pids * (size_t)cap);
    npids = 0;
    while ((e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0) continue;
        if (npids == cap) pids = realloc(pids, sizeof *pids * (size_t)(cap *= 2));
        pids[npids++] = pid;
    }
    closedir(d);
}

struct walk_arg {
    int first, step, use_stat, dense;
    long sockets;
};

/* Reads links by number until `count` fds were seen; lists the rest when holes pile up. */
static long walk_dense(int dfd, long count, char *link) {
    char name[16];
    long present = 0, misses = 0, sockets = 0;
    long allowed = count / 4 > 64 ? count / 4 : 64;
    for (int fd = 0; present < count && misses <= allowed; fd++) {
        snprintf(name, sizeof name, "%d", fd);
        ssize_t n = readlinkat(dfd, name, link, 64);
        if (n <= 0) { misses++; continue; }
        present++;
        if (n > 8 && memcmp(link, "socket:[", 8) == 0) sockets++;
    }
    return sockets;
}

static void *walk(void *p) {
    struct walk_arg *a = p;
    char path[64], link[64];
    for (int i = a->first; i < npids; i += a->step) {
        snprintf(path, sizeof path, "/proc/%d/fd", pids[i]);
        int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) continue;
        struct stat dst;
        if (a->dense && fstat(dfd, &dst) == 0 && dst.st_size > 0) {
            a->sockets += walk_dense(dfd, (long)dst.st_size, link);
            close(dfd);
            continue;
        }
        DIR *d = fdopendir(dfd);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            if (a->use_stat) {
                struct stat st;
                if (fstatat(dfd, e->d_name, &st, 0) == 0 && S_ISSOCK(st.st_mode)) a->sockets++;
            } else {
                ssize_t n = readlinkat(dfd, e->d_name, link, sizeof link);
                if (n > 8 && memcmp(link, "socket:[", 8) == 0) a->sockets++;
            }
        }
        closedir(d);
    }
    return NULL;
}

struct dump_arg {
    long sockets;
};

static void *dump_thread(void *p) {
    struct dump_arg *a = p;
    const uint8_t info = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_SKMEMINFO - 1));
    dump_once(1, info, &a->sockets);
    return NULL;
}

/* with_dump: a sock_diag dump runs on a thread of its own beside the walkers. */
static double walk_once(int threads, int use_stat, int dense, int with_dump, long *sockets) {
    double t0 = now_ms();
    pthread_t dump_tid;
    struct dump_arg dump = {0};
    if (with_dump) pthread_create(&dump_tid, NULL, dump_thread, &dump);
    list_pids();
    pthread_t tid[64];
    struct walk_arg args[64];
    for (int t = 0; t < threads; t++) {
        args[t] = (struct walk_arg){.first = t, .step = threads, .use_stat = use_stat, .dense = dense};
        pthread_create(&tid[t], NULL, walk, &args[t]);
    }
    if (with_dump) pthread_join(dump_tid, NULL);
    *sockets = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        *sockets += args[t].sockets;
    }
    free(pids);
    return now_ms() - t0;
}

int main(int argc, char **argv) {
    int runs = 5, threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int c;
    const char *only = NULL;
    while ((c = getopt(argc, argv, "r:t:m:")) != -1) {
        if (c == 'r') runs = atoi(optarg);
        else if (c == 't') threads = atoi(optarg);
        else if (c == 'm') only = optarg;
        else {
            fprintf(stderr, "usage: %s [-r RUNS] [-t THREADS] [-m MODE]\n", argv[0]);
            return 2;
        }
    }
    if (runs < 1 || runs > 100) runs = 5;
    if (threads < 1 || threads > 64) threads = 2;
    const uint8_t info = (1 << (INET_DIAG_INFO - 1)) | (1 << (INET_DIAG_SKMEMINFO - 1));

    struct { const char *name; int kind, v6, threads, use_stat, dense, with_dump; uint8_t ext; } cases[] = {
        {"dump-tcp", 0, 1, 0, 0, 0, 0, info},
        {"dump-tcp4", 0, 0, 0, 0, 0, 0, info},
        {"dump-tcp-bare", 0, 1, 0, 0, 0, 0, 0},
        {"walk-1", 1, 0, 1, 0, 0, 0, 0},
        {"walk-N", 1, 0, threads, 0, 0, 0, 0},
        {"stat-1", 1, 0, 1, 1, 0, 0, 0},
        {"dense-N", 1, 0, threads, 0, 1, 0, 0},
        {"dump+walk-N", 1, 0, threads, 0, 1, 1, 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        if (only && strcmp(only, cases[k].name) != 0) continue;
        double t[100];
        long count = 0;
        for (int r = 0; r < runs; r++) {
            t[r] = cases[k].kind == 0 ? dump_once(cases[k].v6, cases[k].ext, &count)
                                      : walk_once(cases[k].threads, cases[k].use_stat, cases[k].dense,
                                                  cases[k].with_dump, &count);
        }
        qsort(t, (size_t)runs, sizeof t[0], cmp_double);
        char label[32];
        const char *n = strchr(cases[k].name, 'N');
        if (cases[k].kind == 1 && n)
            snprintf(label, sizeof label, "%.*s%d", (int)(n - cases[k].name), cases[k].name, cases[k].threads);
        else
            snprintf(label, sizeof label, "%s", cases[k].name);
        printf("%-14s %8.1f ms  (%ld %s)\n", label, t[runs / 2], count,
               cases[k].kind == 0 ? "sockets" : "socket fds");
    }
    return 0;
}
