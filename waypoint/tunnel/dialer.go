package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/waypoint/listener"
	"github.com/warren-mesh/warren/waypoint/upstream"
	"github.com/warren-mesh/warren/ztunnel/hbone"
)

// DefaultHBONEPort is where an endpoint's ztunnel accepts HBONE.
const DefaultHBONEPort = 15008

// DialerOptions configure a Dialer.
type DialerOptions struct {
	// Pool carries the tunnels (shared, HTTP/2 multiplexed). Required.
	Pool *hbone.Pool
	// Source is the waypoint's own SVID. Required.
	Source x509svid.Source
	// Bundle verifies the endpoint's ztunnel. Required.
	Bundle *certs.TrustBundle
	// Port is the HBONE port of endpoints; default 15008 (tests use
	// others).
	Port uint16
	// Timeout bounds one dial: TCP connect, TLS handshake (for a new
	// connection) and the CONNECT's answer. Default 10s.
	Timeout time.Duration
}

// Dialer opens HBONE tunnels to mesh endpoints. It implements
// upstream.Dialer; use it as upstream.ByTunnel's HBONE side.
type Dialer struct {
	opts DialerOptions
}

var _ upstream.Dialer = (*Dialer)(nil)

// NewDialer checks o.
func NewDialer(o DialerOptions) (*Dialer, error) {
	if o.Pool == nil || o.Source == nil || o.Bundle == nil {
		return nil, errors.New("waypoint: tunnel: dialer needs a Pool, a Source and a Bundle")
	}
	if o.Port == 0 {
		o.Port = DefaultHBONEPort
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	return &Dialer{opts: o}, nil
}

// Dial opens a tunnel to ep: CONNECT ep.Addr through <ep's IP>:Port,
// requiring the peer to present ep.Identity. The connection's source
// (listener.Meta in ctx) goes in Forwarded; the attempt's traceparent
// (upstream.WithTraceparent), else the inbound tunnel's, and its baggage
// go along as headers.
func (d *Dialer) Dial(ctx context.Context, ep upstream.Endpoint) (net.Conn, error) {
	dst, err := netip.ParseAddrPort(ep.Addr)
	if err != nil {
		return nil, fmt.Errorf("waypoint: hbone %s: endpoint address: %w", ep.Addr, err)
	}
	if ep.Identity == "" {
		return nil, fmt.Errorf("waypoint: hbone %s: the endpoint has no identity to verify", ep.Addr)
	}
	id, err := spiffeid.FromString(ep.Identity)
	if err != nil {
		return nil, fmt.Errorf("waypoint: hbone %s: endpoint identity %q: %w", ep.Addr, ep.Identity, err)
	}
	req := hbone.DialRequest{
		Addr:      netip.AddrPortFrom(dst.Addr(), d.opts.Port),
		Authority: dst,
		Source:    d.opts.Source,
		Bundle:    d.opts.Bundle,
		ServerID:  id,
	}
	tp := upstream.TraceparentFrom(ctx)
	if m, ok := listener.MetaFrom(ctx); ok {
		if src, err := netip.ParseAddrPort(m.SourceAddr); err == nil {
			req.ForwardedFor = src.Addr()
		} else if ip, err := netip.ParseAddr(m.SourceAddr); err == nil {
			req.ForwardedFor = ip
		}
		if tp == "" {
			tp = m.Traceparent
		}
		if m.Baggage != "" {
			req.Header = http.Header{"Baggage": {m.Baggage}}
		}
	}
	if tp != "" {
		if req.Header == nil {
			req.Header = http.Header{}
		}
		req.Header["Traceparent"] = []string{tp}
	}
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	s, err := d.opts.Pool.Dial(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("waypoint: hbone %s via %s as %s: %w", ep.Addr, req.Addr, id, err)
	}
	return s, nil
}
