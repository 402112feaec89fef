package bpf

// Pod flags (CapturePodCfg.Flags), as in capture.c.
const (
	PodOutbound uint32 = 1 // capture outbound TCP connects
	PodInbound  uint32 = 2 // steer inbound TCP connections to the inbound listener
)

// Port exclusion directions (CapturePortKey.Dir).
const (
	DirOutbound uint8 = 0 // destination port of a connect
	DirInbound  uint8 = 1 // local port of an inbound connection
)

// Address families as the kernel numbers them.
const (
	AFInet  = 2
	AFInet6 = 10
)

// Stat indexes into wr_stats, as enum stat_idx in capture.c.
const (
	StatCaptured4 = iota
	StatCaptured6
	StatSkipZtunnel
	StatSkipExcluded
	StatOdstRecorded
	StatInboundSteered
	StatInboundNoListener
	StatInboundSkipped
	StatGetsockoptAnswered
	StatMax
)

// StatNames names the wr_stats counters, by index.
var StatNames = [StatMax]string{
	"captured_ipv4",
	"captured_ipv6",
	"skipped_ztunnel",
	"skipped_excluded",
	"original_dst_recorded",
	"inbound_steered",
	"inbound_no_listener",
	"inbound_skipped",
	"getsockopt_answered",
}

// Load-time constants (.rodata variables) of capture.c.
const (
	VarOutboundPort = "outbound_port"
	VarHBONEPort    = "hbone_port"
	VarZtunnelMark  = "ztunnel_mark"
	VarLookupNetns  = "lookup_netns"
)
