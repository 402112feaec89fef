package waypoint

import (
	"bufio"
	"context"
	"io"
	"net"
	"sync"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/waypoint/authz"
	"github.com/warren-mesh/warren/waypoint/lb"
	"github.com/warren-mesh/warren/waypoint/listener"
)

// maxTCPConnectTries bounds the endpoints tried for one TCP connection.
const maxTCPConnectTries = 3

// ServeTCP passes an opaque TCP connection through: L4 authorization
// (rules with L7 conditions never allow, DENY rules apply on their L4
// conditions), then the destination Service's own endpoints (routes are
// L7), trying another endpoint when a connect fails, then a splice that
// carries half-closes both ways.
func (e *Engine) ServeTCP(ctx context.Context, m *listener.Meta, c net.Conn) {
	defer c.Close()
	snap := e.store.load()
	ss := snap.destination(m)
	if ss == nil {
		return
	}
	// The dialer reads the connection's source and trace context here.
	ctx = listener.WithMeta(ctx, m)
	if len(ss.policies) > 0 {
		d := authz.Evaluate(ss.policies, &authz.Request{
			Source: authz.Source{Identity: m.SourceIdentity, Namespace: m.SourceNamespace},
			Port:   m.Port, L4Only: true})
		if !d.Allow {
			e.metrics.denied.WithLabelValues(ss.key, d.Policy, d.Reason).Inc()
			return
		}
	}
	rs := ss.defaultRoute(m.Port)
	if rs == nil || len(rs.backends) == 0 {
		return
	}
	b := rs.backends[0]
	var tried []*lb.Endpoint
	for range maxTCPConnectTries {
		ep := b.set.Pick(e.now(), tried)
		if ep == nil {
			return
		}
		tried = append(tried, ep)
		done := ep.Start()
		uc, err := e.opts.Dialer.Dial(ctx, ep.Endpoint)
		if err != nil {
			if ep.ReportConnect(false, e.now()) {
				e.metrics.ejections.WithLabelValues(b.key).Inc()
			}
			done()
			continue
		}
		ep.ReportConnect(true, e.now())
		srcW, _ := snap.sourceWorkload(m.SourceAddr)
		e.metrics.tcp.WithLabelValues("waypoint", srcW, ss.name).Inc()
		_, _ = splice(c, uc)
		_ = uc.Close()
		done()
		return
	}
}

// protocol is the declared protocol of a port of the Service.
func (ss *serviceState) protocol(port uint32) warrenv1.Protocol {
	if ss == nil {
		return warrenv1.Protocol_PROTOCOL_UNSPECIFIED
	}
	return ss.l7.Protocol(port)
}

// splice copies both ways until both directions end, half-closing each
// side's write direction when its source ends. It returns the bytes
// copied from b to a (toA) and from a to b.
func splice(a, b io.ReadWriteCloser) (toA, toB int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		toB, _ = copyHalf(b, a)
	}()
	toA, _ = copyHalf(a, b)
	wg.Wait()
	return toA, toB
}

// copyHalf copies src to dst, then half-closes dst (or closes both when
// half-close is not possible).
func copyHalf(dst io.WriteCloser, src io.ReadCloser) (int64, error) {
	bp := bufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(dst, struct{ io.Reader }{src}, *bp)
	bufPool.Put(bp)
	if cw, ok := dst.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	} else {
		_ = dst.Close()
		_ = src.Close()
	}
	return n, err
}

// bufConn reads what a hijacked connection's bufio.Reader already holds
// before reading the connection.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b *bufConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return b.Conn.Close()
}
