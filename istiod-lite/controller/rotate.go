package controller

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/warren-mesh/warren/certs"
	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/xds"
)

// Rotator switches the signing root with zero failed handshakes: the new
// root joins the bundle, every connected proxy must ACK that bundle, and
// only then does the CA sign with it. Retiring the old root is a separate
// step, after the longest SVID lifetime has passed.
type Rotator struct {
	CA  *certs.CA
	XDS interface {
		WaitForAck(ctx context.Context, typeURL, name, version string) error
	}
	// Stored reports the version of the published trust bundle.
	Stored func() (string, bool)
}

// ExpectedBundle is the TrustBundle resource translation publishes for
// roots (sorted PEM, as translate does).
func ExpectedBundle(td string, roots []*x509.Certificate) *warrenv1.TrustBundle {
	var pems []string
	for _, r := range roots {
		pems = append(pems, string(certs.EncodeCertificates([]*x509.Certificate{r})))
	}
	sort.Strings(pems)
	return &warrenv1.TrustBundle{TrustDomain: td, RootsPem: pems}
}

// PrepareAndActivate runs rotation steps 1 and 2. If a rotation is already
// prepared (a previous attempt timed out waiting for ACKs), it resumes it.
// On error the signer is unchanged and the new root stays trusted, which
// is safe; call again to retry.
func (r *Rotator) PrepareAndActivate(ctx context.Context) (*x509.Certificate, error) {
	if r.CA.Pending() == nil {
		if _, err := r.CA.PrepareRoot(); err != nil {
			return nil, err
		}
	}
	pending := r.CA.Pending()
	want, err := xds.Version(ExpectedBundle(r.CA.TrustDomain().Name(), r.CA.Bundle().Roots()))
	if err != nil {
		return nil, err
	}
	// Wait for the controller to publish the bundle holding the new root.
	for {
		if v, ok := r.Stored(); ok && v == want {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("controller: rotation: the new trust bundle was not published: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := r.XDS.WaitForAck(ctx, xds.TypeTrustBundle, xds.TrustBundleName, want); err != nil {
		if errors.Is(err, xds.ErrSuperseded) {
			return nil, fmt.Errorf("controller: rotation: the trust bundle changed while waiting; run the rotation again: %w", err)
		}
		return nil, fmt.Errorf("controller: rotation: not every proxy trusts the new root yet, signer unchanged: %w", err)
	}
	if err := r.CA.ActivatePending(); err != nil {
		return nil, err
	}
	return pending.Root, nil
}
