#define _GNU_SOURCE
#include "CSockDiag.h"
#include <sched.h>
#include <sys/vfs.h>
#include <string.h>
#include <linux/tcp.h>

// If a kernel header ever moves these, the build fails here rather than misreading counters.
_Static_assert(offsetof(struct tcp_info, tcpi_rtt) == 68, "tcp_info layout changed");
_Static_assert(offsetof(struct tcp_info, tcpi_total_retrans) == 100, "tcp_info layout changed");
_Static_assert(offsetof(struct tcp_info, tcpi_bytes_acked) == 120, "tcp_info layout changed");
_Static_assert(offsetof(struct tcp_info, tcpi_bytes_received) == 128, "tcp_info layout changed");
_Static_assert(offsetof(struct tcp_info, tcpi_segs_out) == 136, "tcp_info layout changed");
_Static_assert(offsetof(struct tcp_info, tcpi_bytes_sent) == 200, "tcp_info layout changed");
_Static_assert(sizeof(struct inet_diag_msg) == 72, "inet_diag_msg layout changed");
_Static_assert(sizeof(struct inet_diag_req_v2) == 56, "inet_diag_req_v2 layout changed");
_Static_assert(sizeof(struct inet_diag_bc_op) == 4, "inet_diag_bc_op layout changed");
_Static_assert(sizeof(struct nlmsghdr) == 16, "nlmsghdr layout changed");

#define HAS(field) (len >= offsetof(struct tcp_info, field) + sizeof(((struct tcp_info *)0)->field))

void csd_tcp_stats_read(const void *data, size_t len, csd_tcp_stats *out) {
    struct tcp_info ti;
    memset(out, 0, sizeof(*out));
    memset(&ti, 0, sizeof(ti));
    // Older kernels send a shorter tcp_info, newer ones a longer: copy what both know.
    memcpy(&ti, data, len < sizeof(ti) ? len : sizeof(ti));
    out->unacked = ti.tcpi_unacked;
    out->sacked = ti.tcpi_sacked;
    out->lost = ti.tcpi_lost;
    out->rtt_us = ti.tcpi_rtt;
    out->rttvar_us = ti.tcpi_rttvar;
    out->snd_cwnd = ti.tcpi_snd_cwnd;
    out->total_retrans = ti.tcpi_total_retrans;
    if (HAS(tcpi_bytes_received)) {
        out->bytes_acked = ti.tcpi_bytes_acked;
        out->bytes_received = ti.tcpi_bytes_received;
    }
    if (HAS(tcpi_segs_in)) {
        out->segs_out = ti.tcpi_segs_out;
        out->segs_in = ti.tcpi_segs_in;
    }
    if (HAS(tcpi_min_rtt)) out->min_rtt_us = ti.tcpi_min_rtt;
    if (HAS(tcpi_bytes_retrans)) {
        out->bytes_sent = ti.tcpi_bytes_sent;
        out->bytes_retrans = ti.tcpi_bytes_retrans;
        out->has_bytes_sent = 1;
    }
}

// ---- AF_PACKET capture (TPACKET_V3) ----
#include <errno.h>
#include <linux/if_packet.h>
#include <linux/if_ether.h>
#include <linux/filter.h>
#include <arpa/inet.h>

_Static_assert(sizeof(struct sock_filter) == 8, "sock_filter layout changed");
_Static_assert(offsetof(struct tpacket3_hdr, tp_net) == 26, "tpacket3_hdr layout changed");
_Static_assert(sizeof(struct tpacket_stats_v3) == 12, "tpacket_stats_v3 layout changed");

int csd_packet_setup_ring(int fd, uint32_t block_size, uint32_t block_count, uint32_t frame_size, uint32_t retire_ms) {
    int version = TPACKET_V3;
    if (setsockopt(fd, SOL_PACKET, PACKET_VERSION, &version, sizeof(version)) != 0) return -1;
    struct tpacket_req3 req;
    memset(&req, 0, sizeof(req));
    req.tp_block_size = block_size;
    req.tp_block_nr = block_count;
    req.tp_frame_size = frame_size;
    req.tp_frame_nr = (block_size / frame_size) * block_count;
    req.tp_retire_blk_tov = retire_ms;
    req.tp_sizeof_priv = 0;
    req.tp_feature_req_word = 0;
    if (setsockopt(fd, SOL_PACKET, PACKET_RX_RING, &req, sizeof(req)) != 0) return -1;
    return 0;
}

int csd_packet_bind(int fd, int ifindex) {
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof(sll));
    sll.sll_family = AF_PACKET;
    sll.sll_protocol = htons(ETH_P_ALL);
    sll.sll_ifindex = ifindex;
    if (bind(fd, (const struct sockaddr *)&sll, sizeof(sll)) != 0) return -1;
    return 0;
}

int csd_packet_attach_filter(int fd, const void *instructions, uint16_t count) {
    struct sock_fprog prog;
    prog.len = count;
    prog.filter = (struct sock_filter *)instructions;
    if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog)) != 0) return -1;
    return 0;
}

int csd_packet_statistics(int fd, uint64_t *packets, uint64_t *drops) {
    struct tpacket_stats_v3 st;
    socklen_t len = sizeof(st);
    memset(&st, 0, sizeof(st));
    if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &st, &len) != 0) return -1;
    *packets = st.tp_packets;
    *drops = st.tp_drops;
    return 0;
}

int csd_block_ready(const void *block) {
    const struct tpacket_block_desc *b = block;
    return (__atomic_load_n(&b->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) != 0;
}

uint32_t csd_block_packet_count(const void *block) {
    return ((const struct tpacket_block_desc *)block)->hdr.bh1.num_pkts;
}

uint32_t csd_block_first_offset(const void *block) {
    return ((const struct tpacket_block_desc *)block)->hdr.bh1.offset_to_first_pkt;
}

void csd_block_release(void *block) {
    struct tpacket_block_desc *b = block;
    __atomic_store_n(&b->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
}

void csd_tpacket_read(const void *packet, csd_tpacket_info *out) {
    const struct tpacket3_hdr *h = packet;
    const struct sockaddr_ll *sll =
        (const struct sockaddr_ll *)((const uint8_t *)packet + TPACKET_ALIGN(sizeof(struct tpacket3_hdr)));
    out->next_offset = h->tp_next_offset;
    out->snaplen = h->tp_snaplen;
    out->wire_len = h->tp_len;
    out->net_offset = h->tp_net;
    out->protocol = ntohs(sll->sll_protocol);
    out->hatype = sll->sll_hatype;
    out->pkttype = sll->sll_pkttype;
    out->ifindex = sll->sll_ifindex;
    out->sec = h->tp_sec;
    out->nsec = h->tp_nsec;
}

size_t csd_tpacket3_header_length(void) { return TPACKET3_HDRLEN; }

int csd_setns_net(int fd) { return setns(fd, CLONE_NEWNET); }
int csd_clone_newnet(void) { return CLONE_NEWNET; }
long csd_fs_type(const char *path) {
    struct statfs fs;
    if (statfs(path, &fs) != 0) return -1;
    return (long)fs.f_type;
}
