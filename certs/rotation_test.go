package certs

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// staticSVID is an x509svid.Source holding one SVID.
type staticSVID struct{ svid *x509svid.SVID }

func (s staticSVID) GetX509SVID() (*x509svid.SVID, error) { return s.svid, nil }

// TestRootRotationKeepsHandshakesWorking walks the three rotation steps and
// proves that a client holding an old-root leaf and a server holding a
// new-root leaf complete handshakes during the overlap, and that dropping
// the old root really ends trust in it.
func TestRootRotationKeepsHandshakesWorking(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, func(o *Options) { o.DataDir = dir })
	clientID, serverID := mustID(t, "a", "client"), mustID(t, "b", "server")
	oldRoot := ca.Signer().Root

	oldLeaf, err := ca.NewSVID(clientID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	// Each side holds its own view of the bundle, as proxies do; they are
	// refreshed from the CA's bundle the way xDS pushes it.
	clientBundle := NewTrustBundle(td, ca.Bundle().Roots()...)
	serverBundle := NewTrustBundle(td, ca.Bundle().Roots()...)
	sync := func() {
		clientBundle.Set(ca.Bundle().Roots())
		serverBundle.Set(ca.Bundle().Roots())
	}

	// Step 1: prepare the new root; it is trusted but not yet signing.
	newRoot, err := ca.PrepareRoot()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ca.Signer().Root.Raw, oldRoot.Raw) {
		t.Fatal("PrepareRoot switched the signer")
	}
	if n := len(ca.Bundle().Roots()); n != 2 {
		t.Fatalf("bundle holds %d roots after PrepareRoot, want 2", n)
	}
	// A proxy that has not seen the new bundle yet would reject new-root
	// leaves: that is why the signer switch waits for every proxy's ACK.
	staleBundle := NewTrustBundle(td, oldRoot)
	sync()

	// Step 2: switch signing to the new root.
	if err := ca.ActivatePending(); err != nil {
		t.Fatal(err)
	}
	newLeaf, err := ca.NewSVID(serverID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := staleBundle.Verify(newLeaf.Certificates, time.Now()); err == nil {
		t.Fatal("a bundle without the new root accepted a new-root leaf; the overlap test below would prove nothing")
	}

	// Overlap: old-root client ↔ new-root server, both directions verified.
	for i := 0; i < 3; i++ {
		cErr, sErr := handshake(t,
			HBONEClientConfig(staticSVID{oldLeaf}, clientBundle, serverID, TLSOptions{}),
			HBONEServerConfig(staticSVID{newLeaf}, serverBundle, AuthorizeID(clientID), TLSOptions{}))
		if cErr != nil || sErr != nil {
			t.Fatalf("overlap handshake %d: client %v, server %v", i, cErr, sErr)
		}
	}

	// The CA persisted each step: a restart resumes with the new signer
	// and both roots.
	reloaded := newTestCA(t, func(o *Options) { o.DataDir = dir })
	if !bytes.Equal(reloaded.Signer().Root.Raw, newRoot.Raw) || len(reloaded.Bundle().Roots()) != 2 {
		t.Fatal("restart lost the rotation state")
	}

	// Step 3: drop the old root. The active root cannot be dropped.
	if err := ca.RetireRoot(newRoot); err == nil {
		t.Fatal("retired the active root")
	}
	if err := ca.RetireRoot(oldRoot); err != nil {
		t.Fatal(err)
	}
	sync()
	_, sErr := handshake(t,
		HBONEClientConfig(staticSVID{oldLeaf}, clientBundle, serverID, TLSOptions{}),
		HBONEServerConfig(staticSVID{newLeaf}, serverBundle, AuthorizeAny(), TLSOptions{}))
	if sErr == nil || !strings.Contains(sErr.Error(), "does not verify") {
		t.Fatalf("after retiring the old root the server accepted an old-root client: %v", sErr)
	}
	fresh, err := ca.NewSVID(clientID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cErr, sErr := handshake(t,
		HBONEClientConfig(staticSVID{fresh}, clientBundle, serverID, TLSOptions{}),
		HBONEServerConfig(staticSVID{newLeaf}, serverBundle, AuthorizeAny(), TLSOptions{}))
	if cErr != nil || sErr != nil {
		t.Fatalf("post-rotation handshake: client %v, server %v", cErr, sErr)
	}
	reloaded = newTestCA(t, func(o *Options) { o.DataDir = dir })
	if len(reloaded.Bundle().Roots()) != 1 || reloaded.Pending() != nil {
		t.Fatal("restart after retire: want exactly the new root and nothing pending")
	}
}

func TestRotationStepOrder(t *testing.T) {
	ca := newTestCA(t)
	if err := ca.ActivatePending(); err == nil {
		t.Fatal("activated with nothing prepared")
	}
	if _, err := ca.PrepareRoot(); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.PrepareRoot(); err == nil {
		t.Fatal("prepared a second root while one is pending")
	}
	if err := ca.RetireRoot(ca.Pending().Root); err == nil {
		t.Fatal("retired the pending root")
	}
}

func TestTrustBundleChangeNotification(t *testing.T) {
	ca := newTestCA(t)
	b := ca.Bundle()
	v, ch := b.Version(), b.Changed()
	if _, err := ca.PrepareRoot(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
	default:
		t.Fatal("Changed channel not closed by a root addition")
	}
	if b.Version() != v+1 {
		t.Fatalf("version %d → %d, want +1", v, b.Version())
	}
	if b.Set(b.Roots()) {
		t.Fatal("setting the same roots reported a change")
	}
}
