// CSockDiag: the kernel's sock_diag / inet_diag constants for Swift, and the layouts Swift
// cannot import, behind functions with the csd_ prefix. tcp_info is mirrored into our own
// struct because glibc's <netinet/tcp.h> defines a shorter `struct tcp_info` that clashes with
// <linux/tcp.h> once Swift imports both (see NOTES.md); <linux/tcp.h> is only included by
// shim.c, which asserts the offsets we read.
#ifndef CSOCKDIAG_H
#define CSOCKDIAG_H

#include <stdint.h>
#include <stddef.h>
#include <sys/socket.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/inet_diag.h>
// The scanner: one epoll instance; SIGINT as a descriptor the scan loop can wait on.
#include <sys/epoll.h>
#include <sys/signalfd.h>

/// The tcp_info fields portwatch reads; zero where the running kernel's tcp_info is shorter.
typedef struct {
    uint32_t unacked;       // LISTEN: current accept queue
    uint32_t sacked;        // LISTEN: accept queue limit
    uint32_t lost;
    uint32_t rtt_us;
    uint32_t rttvar_us;
    uint32_t snd_cwnd;
    uint32_t total_retrans;
    uint64_t bytes_acked;
    uint64_t bytes_received;
    uint32_t segs_out;
    uint32_t segs_in;
    uint32_t min_rtt_us;
    uint64_t bytes_sent;
    uint64_t bytes_retrans;
    uint8_t has_bytes_sent; // the kernel's tcp_info has bytes_sent/bytes_retrans (4.19+)
} csd_tcp_stats;

/// Copies the fields we read out of a kernel tcp_info of `len` bytes.
void csd_tcp_stats_read(const void *data, size_t len, csd_tcp_stats *out);

// ---- AF_PACKET capture (TPACKET_V3 ring): layout-dependent pieces for Capture.swift ----
// <linux/if_packet.h> and <linux/filter.h> stay in shim.c: glibc's <netpacket/packet.h>
// (pulled in by Glibc) defines the same structs, which would clash once Swift imports both.

/// What portwatch reads of one tpacket3_hdr and the sockaddr_ll behind it.
typedef struct {
    uint32_t next_offset;   // tp_next_offset: bytes to the next packet in the block (0 = last)
    uint32_t snaplen;       // bytes captured (after the filter's snap length)
    uint32_t wire_len;      // the packet's length on the wire
    uint32_t net_offset;    // tp_net: offset of the network header from the packet's header
    uint16_t protocol;      // sll_protocol, host order (ETH_P_IP 0x0800, ETH_P_IPV6 0x86dd)
    uint16_t hatype;        // sll_hatype (ARPHRD_LOOPBACK = 772)
    uint8_t pkttype;        // sll_pkttype (PACKET_HOST 0 ... PACKET_OUTGOING 4)
    int32_t ifindex;        // sll_ifindex
    uint32_t sec;           // tp_sec: when the kernel took the packet (CLOCK_REALTIME)
    uint32_t nsec;          // tp_nsec
} csd_tpacket_info;

/// Switches `fd` to TPACKET_V3 and asks for a receive ring of block_count blocks of block_size
/// bytes (block_size a multiple of the page size); a block is handed to user space when full or
/// after retire_ms. 0, or -1 with errno set (as the system calls they wrap).
int csd_packet_setup_ring(int fd, uint32_t block_size, uint32_t block_count, uint32_t frame_size, uint32_t retire_ms);
/// Binds an AF_PACKET socket for every protocol (ETH_P_ALL) to one interface, or to all when
/// ifindex is 0. 0, or -1 with errno set (as the system calls they wrap).
int csd_packet_bind(int fd, int ifindex);
/// Attaches a classic BPF program (`count` 8-byte sock_filter instructions) with SO_ATTACH_FILTER.
/// 0, or -1 with errno set (as the system calls they wrap).
int csd_packet_attach_filter(int fd, const void *instructions, uint16_t count);
/// Reads PACKET_STATISTICS (TPACKET_V3: packets and drops since the previous read; reading resets
/// them). 0, or -1 with errno set (as the system calls they wrap).
int csd_packet_statistics(int fd, uint64_t *packets, uint64_t *drops);
/// True when the kernel handed this block to user space (TP_STATUS_USER), with acquire ordering.
int csd_block_ready(const void *block);
/// Number of packets in a ready block and the offset of the first from the block's start.
uint32_t csd_block_packet_count(const void *block);
uint32_t csd_block_first_offset(const void *block);
/// Gives the block back to the kernel (TP_STATUS_KERNEL), with release ordering.
void csd_block_release(void *block);
/// Reads a tpacket3_hdr and its sockaddr_ll.
void csd_tpacket_read(const void *packet, csd_tpacket_info *out);
/// sizeof(struct tpacket3_hdr) aligned + sizeof(struct sockaddr_ll): the bytes before tp_net at least.
size_t csd_tpacket3_header_length(void);

// ---- Network namespaces ----

/// setns(2) for a network namespace file: moves the calling thread into it. 0, or -1 with errno.
int csd_setns_net(int fd);
/// The file system type (statfs f_type) of `path`, or -1 with errno.
long csd_fs_type(const char *path);
/// CLONE_NEWNET, for callers that check a namespace file's type.
int csd_clone_newnet(void);

#endif
