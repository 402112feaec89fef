package bpf

import (
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
)

// TestObject checks the committed object against what the loader and
// ztunnel rely on: programs with the right types, maps with the right
// key/value sizes and pinning, and the load-time constants.
func TestObject(t *testing.T) {
	spec, err := LoadCapture()
	if err != nil {
		t.Fatal(err)
	}
	progs := map[string]ebpf.ProgramType{
		"wr_connect4":   ebpf.CGroupSockAddr,
		"wr_connect6":   ebpf.CGroupSockAddr,
		"wr_sock_ops":   ebpf.SockOps,
		"wr_getsockopt": ebpf.CGroupSockopt,
		"wr_sk_lookup":  ebpf.SkLookup,
	}
	for name, typ := range progs {
		p := spec.Programs[name]
		if p == nil {
			t.Errorf("program %s missing", name)
			continue
		}
		if p.Type != typ {
			t.Errorf("program %s has type %v, want %v", name, p.Type, typ)
		}
	}
	maps := map[string][2]uintptr{
		"wr_pods":      {8, unsafe.Sizeof(CapturePodCfg{})},
		"wr_ports":     {unsafe.Sizeof(CapturePortKey{}), 1},
		"wr_cidrs":     {unsafe.Sizeof(CaptureCidrKey{}), 1},
		"wr_skip_cg":   {8, 1},
		"wr_probe_src": {16, 1},
		"wr_odst":      {unsafe.Sizeof(CaptureOdstKey{}), unsafe.Sizeof(CaptureOrigDst{})},
		"wr_inbound":   {unsafe.Sizeof(CaptureInboundKey{}), 8},
		"wr_odst_sk":   {4, unsafe.Sizeof(CaptureOrigDst{})},
		"wr_stats":     {4, 8},
	}
	for name, kv := range maps {
		m := spec.Maps[name]
		if m == nil {
			t.Errorf("map %s missing", name)
			continue
		}
		if uintptr(m.KeySize) != kv[0] || uintptr(m.ValueSize) != kv[1] {
			t.Errorf("map %s key/value %d/%d, want %d/%d", name, m.KeySize, m.ValueSize, kv[0], kv[1])
		}
		if m.Pinning != ebpf.PinByName {
			t.Errorf("map %s not pinned by name", name)
		}
	}
	if got := spec.Maps["wr_stats"].MaxEntries; got != StatMax {
		t.Errorf("wr_stats has %d entries, StatMax = %d", got, StatMax)
	}
	for _, v := range []string{VarOutboundPort, VarHBONEPort, VarZtunnelMark, VarLookupNetns} {
		if spec.Variables[v] == nil {
			t.Errorf("variable %s missing", v)
		}
	}
	var port uint16
	if err := spec.Variables[VarOutboundPort].Get(&port); err != nil || port != 15001 {
		t.Errorf("outbound_port default = %d (%v), want 15001", port, err)
	}
	// ztunnel (redirect/nodeproto) decodes wr_odst with its own copy of the
	// layout: 32-byte key, 24-byte value.
	if unsafe.Sizeof(CaptureOdstKey{}) != 32 || unsafe.Sizeof(CaptureOrigDst{}) != 24 {
		t.Errorf("wr_odst layout changed: key %d value %d", unsafe.Sizeof(CaptureOdstKey{}), unsafe.Sizeof(CaptureOrigDst{}))
	}
}
