package controller_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/protobuf/proto"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/examples"
	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/controller"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
	"github.com/warren-mesh/warren/istiod-lite/xds"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
)

// source is a settable Source.
type source struct {
	mu   sync.Mutex
	snap *model.Snapshot
	ch   chan struct{}
}

func newSource(t *testing.T) *source {
	snap, err := file.LoadFS(examples.FS(), ".")
	if err != nil {
		t.Fatal(err)
	}
	return &source{snap: snap, ch: make(chan struct{}, 1)}
}

func (s *source) Snapshot() *model.Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap
}

func (s *source) Changed() <-chan struct{} { return s.ch }

func (s *source) set(snap *model.Snapshot) {
	s.mu.Lock()
	s.snap = snap
	s.mu.Unlock()
	select {
	case s.ch <- struct{}{}:
	default:
	}
}

type statusSink struct {
	mu sync.Mutex
	n  int
	st translate.Status
}

func (s *statusSink) Enqueue(_ *model.Snapshot, st translate.Status) {
	s.mu.Lock()
	s.n++
	s.st = st
	s.mu.Unlock()
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestLoopPublishesTranslation(t *testing.T) {
	srv, err := xds.NewServer(xds.Options{AllowUnauthenticated: true, Debounce: xds.NoDebounce})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	authority, err := certs.NewCA(certs.Options{TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	src := newSource(t)
	st := &statusSink{}
	c, err := controller.New(controller.Options{Source: src, XDS: srv, Bundle: authority.Bundle(), Status: st})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Start(ctx)
	select {
	case <-c.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("never synced")
	}
	if _, _, ok := srv.Get(xds.TypeL7Service, "server/echo.server.svc.cluster.local"); !ok {
		t.Fatal("L7Service of echo not published")
	}
	msg, _, ok := srv.Get(xds.TypeTrustBundle, xds.TrustBundleName)
	if !ok || len(msg.(*warrenv1.TrustBundle).RootsPem) != 1 {
		t.Fatalf("trust bundle not published: %v", msg)
	}
	if len(srv.Names(xds.TypeWorkload)) != 3 {
		t.Fatalf("workloads: %v", srv.Names(xds.TypeWorkload))
	}

	// A pod change is translated incrementally and published.
	snap := *src.Snapshot()
	snap.Pods = append(snap.Pods[:0:0], snap.Pods...)
	p := snap.Pods[0].DeepCopy()
	p.Status.Conditions = nil // not ready any more
	snap.Pods[0] = p
	src.set(&snap)
	eventually(t, "the pod change to reach xDS", func() bool {
		m, _, ok := srv.Get(xds.TypeWorkload, p.Namespace+"/"+p.Name)
		return ok && !m.(*warrenv1.Workload).Ready
	})
	if _, info := c.Last(); info.Scope != translate.ScopePods {
		t.Fatalf("pod change translated with scope %s", info.Scope)
	}

	// A root added to the bundle is published too.
	if _, err := authority.PrepareRoot(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the new bundle to reach xDS", func() bool {
		m, _, _ := srv.Get(xds.TypeTrustBundle, xds.TrustBundleName)
		return len(m.(*warrenv1.TrustBundle).RootsPem) == 2
	})
	st.mu.Lock()
	n := st.n
	st.mu.Unlock()
	if n < 3 {
		t.Fatalf("status sink called %d times, want one per round", n)
	}
}

func TestChanges(t *testing.T) {
	src := newSource(t)
	a := src.Snapshot()
	if controller.Changes(nil, a) != nil {
		t.Fatal("no previous snapshot must mean a full translation")
	}
	b := *a
	b.Pods = append(b.Pods[:0:0], a.Pods...)
	b.Pods[1] = a.Pods[1].DeepCopy()
	ch := controller.Changes(a, &b)
	if len(ch) != 1 || ch[0].Kind != "Pod" || ch[0].Name != a.Pods[1].Name {
		t.Fatalf("changes = %+v", ch)
	}
	c := b
	c.Services = append(c.Services[:0:0], b.Services...)
	c.Services[0] = b.Services[0].DeepCopy()
	if controller.Changes(&b, &c) != nil {
		t.Fatal("a Service change must mean a full translation")
	}
	d := b
	d.HTTPRoutes = nil
	ch = controller.Changes(&b, &d)
	if len(ch) != 1 || ch[0].Kind != "HTTPRoute" {
		t.Fatalf("route deletion: %+v", ch)
	}
}

// proxy is an xDS client acting as a ztunnel; nack makes it refuse bundles.
func proxy(t *testing.T, ctx context.Context, addr, node string, nack bool) {
	t.Helper()
	cl, err := client.New(client.Options{
		Address:  addr,
		NodeID:   client.ZtunnelNodeID(node).String(),
		Types:    []string{client.TypeTrustBundle},
		Insecure: true,
		Handler: client.HandlerFunc(func(typeURL string, _ map[string]proto.Message, _ []string) error {
			if nack && typeURL == client.TypeTrustBundle {
				return errors.New("test proxy refuses trust bundles")
			}
			return nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	go cl.Run(ctx)
}

func TestRotationWaitsForEveryProxy(t *testing.T) {
	for _, tc := range []struct {
		name string
		nack bool
	}{{"all proxies ACK", false}, {"one proxy NACKs", true}} {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv, err := xds.NewServer(xds.Options{AllowUnauthenticated: true, Debounce: xds.NoDebounce})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			go srv.Serve(ctx, lis)
			defer srv.Close()
			authority, err := certs.NewCA(certs.Options{TrustDomain: spiffeid.RequireTrustDomainFromString("cluster.local"), DataDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			c, _ := controller.New(controller.Options{Source: newSource(t), XDS: srv, Bundle: authority.Bundle()})
			go c.Start(ctx)
			<-c.Synced()
			proxy(t, ctx, lis.Addr().String(), "node-a", false)
			proxy(t, ctx, lis.Addr().String(), "node-b", tc.nack)
			eventually(t, "two proxies", func() bool { return len(srv.Proxies()) == 2 })

			oldRoot := authority.Signer().Root
			r := &controller.Rotator{CA: authority, XDS: srv, Stored: func() (string, bool) {
				_, v, ok := srv.Get(xds.TypeTrustBundle, xds.TrustBundleName)
				return v, ok
			}}
			rctx, rcancel := context.WithTimeout(ctx, 3*time.Second)
			defer rcancel()
			newRoot, err := r.PrepareAndActivate(rctx)
			if !tc.nack {
				if err != nil {
					t.Fatal(err)
				}
				if !authority.Signer().Root.Equal(newRoot) || authority.Signer().Root.Equal(oldRoot) {
					t.Fatal("signer not switched to the new root")
				}
				if len(authority.Bundle().Roots()) != 2 {
					t.Fatal("old root must stay trusted until retired")
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "ztunnel~node-b") || !strings.Contains(err.Error(), "signer unchanged") {
				t.Fatalf("rotation with a NACKing proxy: err = %v", err)
			}
			if !authority.Signer().Root.Equal(oldRoot) {
				t.Fatal("signer switched although a proxy does not trust the new root")
			}
			if authority.Pending() == nil {
				t.Fatal("the prepared root was dropped; a retry should resume it")
			}
		})
	}
}
