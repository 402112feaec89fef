package podtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/warren-mesh/warren/redirect/loader"
)

// ListenIn opens a TCP listener (MPTCP off, so it can enter a SOCKMAP)
// inside ns. Sockets of this process are not in a test's cgroup, so capture
// never applies to them.
func ListenIn(ns *os.File, network, addr string) (*net.TCPListener, error) {
	var ln net.Listener
	err := loader.InNetns(ns, func() error {
		var lc net.ListenConfig
		lc.SetMultipathTCP(false)
		var err error
		ln, err = lc.Listen(context.Background(), network, addr)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// Serve runs a banner server in n: every connection is told
// "<banner> local=<ip:port> peer=<ip:port>" and closed.
func Serve(t testing.TB, n *Netns, network, addr, banner string) *net.TCPListener {
	t.Helper()
	ln, err := ListenIn(n.File(), network, addr)
	if err != nil {
		t.Fatalf("podtest: listen %s %s in %s: %v", network, addr, n.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveBanner(ln, func(c net.Conn) string {
		return fmt.Sprintf("%s local=%s peer=%s\n", banner, c.LocalAddr(), c.RemoteAddr())
	})
	return ln
}

func serveBanner(ln net.Listener, line func(net.Conn) string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.Write([]byte(line(c)))
		}()
	}
}

// ServeDNS answers A queries on UDP addr in n with answer.
func ServeDNS(t testing.TB, n *Netns, addr string, answer netip.Addr) {
	t.Helper()
	var pc net.PacketConn
	err := loader.InNetns(n.File(), func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("podtest: dns listen %s: %v", addr, err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			nr, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var q dnsmessage.Message
			if q.Unpack(buf[:nr]) != nil || len(q.Questions) == 0 {
				continue
			}
			r := dnsmessage.Message{
				Header:    dnsmessage.Header{ID: q.ID, Response: true, Authoritative: true},
				Questions: q.Questions,
				Answers: []dnsmessage.Resource{{
					Header: dnsmessage.ResourceHeader{Name: q.Questions[0].Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 5},
					Body:   &dnsmessage.AResource{A: answer.As4()},
				}},
			}
			b, err := r.Pack()
			if err == nil {
				pc.WriteTo(b, from)
			}
		}
	}()
}

// DialFrom dials addr from inside n (optionally bound to local ip:port,
// e.g. "127.0.0.6:0") from this process.
func DialFrom(n *Netns, network, local, addr string) DialResult {
	var r DialResult
	err := loader.InNetns(n.File(), func() error {
		r = dial(network, local, addr)
		return nil
	})
	if err != nil {
		return DialResult{Err: err.Error()}
	}
	return r
}
