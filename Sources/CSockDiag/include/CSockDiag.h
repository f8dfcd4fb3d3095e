// CSockDiag: the kernel's sock_diag / inet_diag interface made usable from Swift.
// Netlink macros become real functions (csd_ prefix); tcp_info is mirrored into our own
// struct because glibc's <netinet/tcp.h> defines a shorter `struct tcp_info` that clashes
// with <linux/tcp.h> once Swift imports both (see NOTES.md). <linux/tcp.h> is only
// included by shim.c, which asserts the offsets we read.
#ifndef CSOCKDIAG_H
#define CSOCKDIAG_H

#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>

/// The tcp_info fields portwatch reads; zero where the running kernel's tcp_info is shorter.
typedef struct {
    uint8_t state;
    uint8_t retransmits;
    uint8_t probes;
    uint8_t backoff;
    uint32_t rto_us;
    uint32_t unacked;       // LISTEN: current accept queue
    uint32_t sacked;        // LISTEN: accept queue limit
    uint32_t lost;
    uint32_t retrans;
    uint32_t last_data_recv_ms;
    uint32_t rtt_us;
    uint32_t rttvar_us;
    uint32_t snd_cwnd;
    uint32_t total_retrans;
    uint64_t bytes_acked;
    uint64_t bytes_received;
    uint32_t segs_out;
    uint32_t segs_in;
    uint32_t data_segs_in;
    uint32_t data_segs_out;
    uint32_t min_rtt_us;
    uint32_t notsent_bytes;
    uint64_t bytes_sent;
    uint64_t bytes_retrans;
    uint32_t delivered;
    uint32_t length;        // bytes of tcp_info the kernel gave
    uint8_t has_bytes_sent; // the kernel's tcp_info has bytes_sent/bytes_retrans (4.19+)
} csd_tcp_stats;

/// Copies the fields we read out of a kernel tcp_info of `len` bytes.
void csd_tcp_stats_read(const void *data, size_t len, csd_tcp_stats *out);

/// Size of the kernel's struct tcp_info this shim was built against.
size_t csd_tcp_info_size(void);

// ---- netlink macros as functions ----
static inline size_t csd_nlmsg_align(size_t len) { return NLMSG_ALIGN(len); }
static inline size_t csd_nlmsg_hdrlen(void) { return NLMSG_HDRLEN; }
static inline int csd_nlmsg_ok(const struct nlmsghdr *nlh, int len) { return NLMSG_OK(nlh, len); }
static inline const void *csd_nlmsg_data(const struct nlmsghdr *nlh) { return NLMSG_DATA(nlh); }
static inline size_t csd_rta_align(size_t len) { return RTA_ALIGN(len); }
static inline int csd_rta_ok(const struct rtattr *rta, int len) { return RTA_OK(rta, len); }
static inline const void *csd_rta_data(const struct rtattr *rta) { return RTA_DATA(rta); }
static inline int csd_rta_payload(const struct rtattr *rta) { return (int)RTA_PAYLOAD(rta); }

static inline size_t csd_inet_diag_msg_size(void) { return sizeof(struct inet_diag_msg); }
static inline size_t csd_inet_diag_req_v2_size(void) { return sizeof(struct inet_diag_req_v2); }

#endif
