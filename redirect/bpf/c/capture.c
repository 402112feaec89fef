// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
//
// capture.c: Warren's traffic capture for enrolled pods (no iptables).
//
// Outbound (cgroup/connect4, cgroup/connect6, attached once at the node's pod
// cgroup): a TCP connect() from a socket whose network namespace is enrolled
// (netns cookie in wr_pods) is rewritten to ztunnel's in-pod outbound listener
// (127.0.0.1 / ::1 :15001). The original destination is kept in socket local
// storage and, once the kernel has chosen the source port, copied by the
// sock_ops program into wr_odst keyed by (netns cookie, client ip, client
// port): the peer address ztunnel sees on the accepted socket. ztunnel reads
// it from that map (or, where the optional cgroup/getsockopt program is
// attached above ztunnel, with getsockopt(SO_ORIGINAL_DST)).
//
// Inbound (sk_lookup, one link per pod network namespace): a TCP connection
// to any local port except HBONE (15008) is assigned to ztunnel's inbound
// plaintext listener (15006) held in wr_inbound. Loopback, ztunnel's
// passthrough connections from 127.0.0.6, traffic from the pod to itself,
// configured probe sources (the node) and excluded ports are left alone. An
// enrolled namespace without a listener drops the connection: capture fails
// closed, never to plaintext.
//
// Keep this file outside the Go package directory bpf2go writes into. Do not
// name a function "sockops" (clang 14 rejects it in SEC("sockops")).

#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define SOL_IP 0
#define SOL_IPV6 41
#define SO_ORIGINAL_DST 80 // also IP6T_SO_ORIGINAL_DST

// CTX_READ forces a load of a context field where it is written.
#define CTX_READ(f) (*(volatile typeof(f) *)&(f))

// Load-time constants (rewritten by the loader through .rodata).
volatile const __u16 outbound_port = 15001;
volatile const __u16 hbone_port = 15008;
volatile const __u32 ztunnel_mark = 0; // 0: no mark check
// Network namespace cookie of the pod an sk_lookup program instance serves:
// sk_lookup programs cannot call bpf_get_netns_cookie, so the loader loads
// one instance per pod with its cookie here.
volatile const __u64 lookup_netns = 0;

// Values shared with Go (bpf2go generates the Go types).

// Pod capture configuration, keyed by network namespace cookie.
struct pod_cfg {
	__u32 flags;
	__u32 _pad;
};

#define POD_OUTBOUND 1 // capture outbound connects
#define POD_INBOUND 2  // steer inbound connections (sk_lookup)

// Excluded port of one pod: dir 0 outbound (destination port), 1 inbound
// (local port). Port in host byte order.
struct port_key {
	__u64 netns;
	__u16 port;
	__u8 dir;
	__u8 _pad[5];
};

// Excluded outbound CIDR of one pod, as an LPM trie key: the netns cookie
// (64 bits, always fully matched) followed by the address in IPv6 form
// (IPv4 as ::ffff:a.b.c.d). prefixlen = 64 + 96 + n for IPv4 /n.
struct cidr_key {
	__u32 prefixlen;
	__u8 netns[8];
	__u8 addr[16];
};

// IP address in IPv6 form (IPv4 mapped), network byte order.
struct addr16 {
	__u32 w[4];
};

// Original destination of a captured connection.
struct orig_dst {
	struct addr16 addr; // IPv4 as ::ffff:a.b.c.d
	__u16 port;         // host byte order
	__u16 family;       // AF_INET or AF_INET6
	__u32 _pad;
};

// Key of wr_odst: what ztunnel sees as the peer of the accepted socket, in
// the pod's network namespace.
struct odst_key {
	__u64 netns;
	struct addr16 addr; // client address, IPv4 mapped
	__u32 port;         // client port, host byte order
	__u32 _pad;
};

// struct sockaddr_in6 (linux/in6.h clashes with the libc-less BPF build).
struct sockaddr6 {
	__u16 family;
	__be16 port;
	__u32 flowinfo;
	struct addr16 addr;
	__u32 scope_id;
};

// Key of wr_inbound: the inbound listener of one pod per address family.
struct inbound_key {
	__u64 netns;
	__u32 family;
	__u32 _pad;
};

enum stat_idx {
	STAT_CAPTURED4 = 0,
	STAT_CAPTURED6,
	STAT_SKIP_ZTUNNEL,
	STAT_SKIP_EXCLUDED,
	STAT_ODST_RECORDED,
	STAT_INBOUND_STEERED,
	STAT_INBOUND_NO_LISTENER,
	STAT_INBOUND_SKIPPED,
	STAT_GETSOCKOPT_ANSWERED,
	STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct pod_cfg);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wr_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct port_key);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wr_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__type(key, struct cidr_key);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wr_cidrs SEC(".maps");

// Cgroups (v2 ids) whose sockets are never captured: ztunnel's.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u64);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wr_skip_cg SEC(".maps");

// Source addresses never steered inbound: the node's (kubelet probes).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct addr16);
	__type(value, __u8);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wr_probe_src SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wr_odst_sk SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct odst_key);
	__type(value, struct orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wr_odst SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 32768);
	__type(key, struct inbound_key);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wr_inbound SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} wr_stats SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&wr_stats, &idx);
	if (v)
		*v += 1;
}

static __always_inline int is_mapped4(const struct addr16 *a)
{
	return a->w[0] == 0 && a->w[1] == 0 && a->w[2] == bpf_htonl(0xffff);
}

static __always_inline int is_loopback(const struct addr16 *a)
{
	if (is_mapped4(a)) {
		__u32 v4 = bpf_ntohl(a->w[3]);
		return (v4 >> 24) == 127 || v4 == 0;
	}
	if (a->w[0] == 0 && a->w[1] == 0 && a->w[2] == 0)
		return a->w[3] == bpf_htonl(1) || a->w[3] == 0; // ::1, ::
	return 0;
}

static __always_inline int addr_eq(const struct addr16 *a, const struct addr16 *b)
{
	return a->w[0] == b->w[0] && a->w[1] == b->w[1] && a->w[2] == b->w[2] && a->w[3] == b->w[3];
}

static __always_inline void set_mapped4(struct addr16 *a, __u32 ip4)
{
	a->w[0] = 0;
	a->w[1] = 0;
	a->w[2] = bpf_htonl(0xffff);
	a->w[3] = ip4;
}

static __always_inline int port_excluded(__u64 netns, __u16 port, __u8 dir)
{
	struct port_key k = {};
	k.netns = netns;
	k.port = port;
	k.dir = dir;
	return bpf_map_lookup_elem(&wr_ports, &k) != 0;
}

static __always_inline int cidr_excluded(__u64 netns, const struct addr16 *a)
{
	struct cidr_key k = {};
	k.prefixlen = 64 + 128;
	__builtin_memcpy(k.netns, &netns, 8);
	__builtin_memcpy(k.addr, a, 16);
	return bpf_map_lookup_elem(&wr_cidrs, &k) != 0;
}

// decide returns 1 when this connect must go to ztunnel. dst is the
// destination in IPv6 form, port in host byte order.
static __always_inline int decide(struct bpf_sock_addr *ctx, __u64 netns, const struct addr16 *dst, __u16 port)
{
	struct pod_cfg *pod = bpf_map_lookup_elem(&wr_pods, &netns);
	if (!pod || !(pod->flags & POD_OUTBOUND))
		return 0;
	__u64 cg = bpf_get_current_cgroup_id();
	if (bpf_map_lookup_elem(&wr_skip_cg, &cg)) {
		count(STAT_SKIP_ZTUNNEL);
		return 0;
	}
	if (ztunnel_mark) {
		struct bpf_sock *sk = ctx->sk;
		if (sk && sk->mark == ztunnel_mark) {
			count(STAT_SKIP_ZTUNNEL);
			return 0;
		}
	}
	if (is_loopback(dst))
		return 0;
	if (port_excluded(netns, port, 0) || cidr_excluded(netns, dst)) {
		count(STAT_SKIP_EXCLUDED);
		return 0;
	}
	return 1;
}

static __always_inline int remember(struct bpf_sock_addr *ctx, const struct addr16 *dst, __u16 port, __u16 family)
{
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 0;
	struct orig_dst *o = bpf_sk_storage_get(&wr_odst_sk, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
	if (!o)
		return 0;
	o->addr = *dst;
	o->port = port;
	o->family = family;
	return 1;
}

SEC("cgroup/connect4")
int wr_connect4(struct bpf_sock_addr *ctx)
{
	// connect4 also runs for UDP connect() (glibc's resolver): TCP only.
	if (ctx->type != SOCK_STREAM)
		return 1;
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct addr16 dst;
	set_mapped4(&dst, ctx->user_ip4);
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	if (!decide(ctx, netns, &dst, port))
		return 1;
	// No storage: refuse rather than hand ztunnel a connection it cannot route.
	if (!remember(ctx, &dst, port, AF_INET))
		return 0;
	ctx->user_ip4 = bpf_htonl(0x7f000001);
	ctx->user_port = bpf_htons(outbound_port);
	count(STAT_CAPTURED4);
	return 1;
}

SEC("cgroup/connect6")
int wr_connect6(struct bpf_sock_addr *ctx)
{
	if (ctx->type != SOCK_STREAM)
		return 1;
	__u64 netns = bpf_get_netns_cookie(ctx);
	struct addr16 dst;
	dst.w[0] = ctx->user_ip6[0];
	dst.w[1] = ctx->user_ip6[1];
	dst.w[2] = ctx->user_ip6[2];
	dst.w[3] = ctx->user_ip6[3];
	__u16 port = bpf_ntohs((__u16)ctx->user_port);
	if (!decide(ctx, netns, &dst, port))
		return 1;
	int mapped = is_mapped4(&dst);
	if (!remember(ctx, &dst, port, mapped ? AF_INET : AF_INET6))
		return 0;
	if (mapped) {
		// ::ffff:a.b.c.d from a dual-stack socket (Java's default): the
		// connection is IPv4 on the wire; send it to ::ffff:127.0.0.1.
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = bpf_htonl(0xffff);
		ctx->user_ip6[3] = bpf_htonl(0x7f000001);
		count(STAT_CAPTURED4);
	} else {
		ctx->user_ip6[0] = 0;
		ctx->user_ip6[1] = 0;
		ctx->user_ip6[2] = 0;
		ctx->user_ip6[3] = bpf_htonl(1);
		count(STAT_CAPTURED6);
	}
	ctx->user_port = bpf_htons(outbound_port);
	return 1;
}

// wr_sock_ops copies the original destination of a captured connect into
// wr_odst once the source port is known (TCP_CONNECT_CB).
SEC("sockops")
int wr_sock_ops(struct bpf_sock_ops *skops)
{
	if (skops->op != BPF_SOCK_OPS_TCP_CONNECT_CB)
		return 1;
	struct bpf_sock *sk = skops->sk;
	if (!sk)
		return 1;
	struct orig_dst *o = bpf_sk_storage_get(&wr_odst_sk, sk, 0, 0);
	if (!o)
		return 1;
	struct odst_key k = {};
	k.netns = bpf_get_netns_cookie(skops);
	// Read every context field unconditionally (see wr_sk_lookup).
	__u32 family = CTX_READ(skops->family);
	__u32 ip4 = CTX_READ(skops->local_ip4);
	__u32 a0 = CTX_READ(skops->local_ip6[0]);
	__u32 a1 = CTX_READ(skops->local_ip6[1]);
	__u32 a2 = CTX_READ(skops->local_ip6[2]);
	__u32 a3 = CTX_READ(skops->local_ip6[3]);
	if (family == AF_INET) {
		set_mapped4(&k.addr, ip4);
	} else {
		k.addr.w[0] = a0;
		k.addr.w[1] = a1;
		k.addr.w[2] = a2;
		k.addr.w[3] = a3;
	}
	k.port = skops->local_port;
	struct orig_dst v = *o;
	bpf_map_update_elem(&wr_odst, &k, &v, BPF_ANY);
	count(STAT_ODST_RECORDED);
	return 1;
}

// wr_getsockopt answers getsockopt(SOL_IP|SOL_IPV6, SO_ORIGINAL_DST) on
// ztunnel's accepted socket from wr_odst, as iptables REDIRECT would. It only
// runs when attached above ztunnel's cgroup (see docs/redirect.md for why the
// agent does not attach it by default).
SEC("cgroup/getsockopt")
int wr_getsockopt(struct bpf_sockopt *ctx)
{
	if (ctx->optname != SO_ORIGINAL_DST)
		return 1;
	if (ctx->level != SOL_IP && ctx->level != SOL_IPV6)
		return 1;
	struct bpf_sock *sk = ctx->sk;
	if (!sk)
		return 1;
	struct odst_key k = {};
	k.netns = bpf_get_netns_cookie(ctx);
	__u32 family = CTX_READ(sk->family);
	__u32 ip4 = CTX_READ(sk->dst_ip4);
	__u32 a0 = CTX_READ(sk->dst_ip6[0]);
	__u32 a1 = CTX_READ(sk->dst_ip6[1]);
	__u32 a2 = CTX_READ(sk->dst_ip6[2]);
	__u32 a3 = CTX_READ(sk->dst_ip6[3]);
	if (family == AF_INET) {
		set_mapped4(&k.addr, ip4);
	} else {
		k.addr.w[0] = a0;
		k.addr.w[1] = a1;
		k.addr.w[2] = a2;
		k.addr.w[3] = a3;
	}
	k.port = bpf_ntohs(CTX_READ(sk->dst_port));
	struct orig_dst *o = bpf_map_lookup_elem(&wr_odst, &k);
	if (!o)
		return 1;
	void *p = ctx->optval;
	void *end = ctx->optval_end;
	if (ctx->level == SOL_IP) {
		struct sockaddr_in *sa = p;
		if ((void *)(sa + 1) > end)
			return 1;
		sa->sin_family = AF_INET;
		sa->sin_port = bpf_htons(o->port);
		sa->sin_addr.s_addr = o->addr.w[3];
		__builtin_memset(sa->sin_zero, 0, sizeof(sa->sin_zero));
		ctx->optlen = sizeof(*sa);
	} else {
		struct sockaddr6 *sa = p;
		if ((void *)(sa + 1) > end)
			return 1;
		sa->family = AF_INET6;
		sa->port = bpf_htons(o->port);
		sa->flowinfo = 0;
		sa->addr = o->addr;
		sa->scope_id = 0;
		ctx->optlen = sizeof(*sa);
	}
	// The verifier rejects an 8-byte merged store of optlen and retval.
	asm volatile("" ::: "memory");
	ctx->retval = 0;
	count(STAT_GETSOCKOPT_ANSWERED);
	return 1;
}

SEC("sk_lookup")
int wr_sk_lookup(struct bpf_sk_lookup *ctx)
{
	if (ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	__u16 lport = (__u16)ctx->local_port;
	if (lport == hbone_port)
		return SK_PASS;
	// Read every context field unconditionally: clang turns branch-dependent
	// reads into context pointer arithmetic, which the verifier refuses.
	__u32 family = CTX_READ(ctx->family);
	__u32 l4 = CTX_READ(ctx->local_ip4), r4 = CTX_READ(ctx->remote_ip4);
	struct addr16 local, remote;
	local.w[0] = CTX_READ(ctx->local_ip6[0]);
	local.w[1] = CTX_READ(ctx->local_ip6[1]);
	local.w[2] = CTX_READ(ctx->local_ip6[2]);
	local.w[3] = CTX_READ(ctx->local_ip6[3]);
	remote.w[0] = CTX_READ(ctx->remote_ip6[0]);
	remote.w[1] = CTX_READ(ctx->remote_ip6[1]);
	remote.w[2] = CTX_READ(ctx->remote_ip6[2]);
	remote.w[3] = CTX_READ(ctx->remote_ip6[3]);
	if (family == AF_INET) {
		set_mapped4(&local, l4);
		set_mapped4(&remote, r4);
	}
	__u64 netns = lookup_netns;
	struct pod_cfg *pod = bpf_map_lookup_elem(&wr_pods, &netns);
	if (!pod || !(pod->flags & POD_INBOUND))
		return SK_PASS;
	// Loopback covers ztunnel's passthrough from 127.0.0.6; local == remote
	// is the pod talking to itself; probe sources are the node (kubelet).
	if (is_loopback(&local) || is_loopback(&remote) || addr_eq(&local, &remote) ||
	    bpf_map_lookup_elem(&wr_probe_src, &remote) || port_excluded(netns, lport, 1)) {
		count(STAT_INBOUND_SKIPPED);
		return SK_PASS;
	}
	struct inbound_key k = {};
	k.netns = netns;
	k.family = family;
	struct bpf_sock *sk = bpf_map_lookup_elem(&wr_inbound, &k);
	if (!sk) {
		count(STAT_INBOUND_NO_LISTENER);
		return SK_DROP; // fail closed
	}
	long err = bpf_sk_assign(ctx, sk, 0);
	bpf_sk_release(sk);
	if (err) {
		count(STAT_INBOUND_NO_LISTENER);
		return SK_DROP;
	}
	count(STAT_INBOUND_STEERED);
	return SK_PASS;
}

char _license[] SEC("license") = "Dual BSD/GPL";
