#include "CSockDiag.h"
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

size_t csd_tcp_info_size(void) { return sizeof(struct tcp_info); }

#define HAS(field) (len >= offsetof(struct tcp_info, field) + sizeof(((struct tcp_info *)0)->field))

void csd_tcp_stats_read(const void *data, size_t len, csd_tcp_stats *out) {
    struct tcp_info ti;
    memset(out, 0, sizeof(*out));
    memset(&ti, 0, sizeof(ti));
    // Older kernels send a shorter tcp_info, newer ones a longer: copy what both know.
    memcpy(&ti, data, len < sizeof(ti) ? len : sizeof(ti));
    out->length = (uint32_t)len;
    out->state = ti.tcpi_state;
    out->retransmits = ti.tcpi_retransmits;
    out->probes = ti.tcpi_probes;
    out->backoff = ti.tcpi_backoff;
    out->rto_us = ti.tcpi_rto;
    out->unacked = ti.tcpi_unacked;
    out->sacked = ti.tcpi_sacked;
    out->lost = ti.tcpi_lost;
    out->retrans = ti.tcpi_retrans;
    out->last_data_recv_ms = ti.tcpi_last_data_recv;
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
    if (HAS(tcpi_data_segs_out)) {
        out->notsent_bytes = ti.tcpi_notsent_bytes;
        out->min_rtt_us = ti.tcpi_min_rtt;
        out->data_segs_in = ti.tcpi_data_segs_in;
        out->data_segs_out = ti.tcpi_data_segs_out;
    }
    if (HAS(tcpi_delivered)) out->delivered = ti.tcpi_delivered;
    if (HAS(tcpi_bytes_retrans)) {
        out->bytes_sent = ti.tcpi_bytes_sent;
        out->bytes_retrans = ti.tcpi_bytes_retrans;
        out->has_bytes_sent = 1;
    }
}
