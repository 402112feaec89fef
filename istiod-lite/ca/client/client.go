package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/warren-mesh/warren/certs"
	cav1 "github.com/warren-mesh/warren/istiod-lite/api/ca/v1"
)

// TokenSource returns the bearer token for the next call.
type TokenSource func() (string, error)

// FileToken reads the token from path on every call, so rotated projected
// tokens are picked up.
func FileToken(path string) TokenSource {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("ca client: token: %w", err)
		}
		t := strings.TrimSpace(string(b))
		if t == "" {
			return "", fmt.Errorf("ca client: token file %s is empty", path)
		}
		return t, nil
	}
}

// StaticToken always returns token.
func StaticToken(token string) TokenSource {
	return func() (string, error) { return token, nil }
}

// Options configure a Client.
type Options struct {
	// Address of the CA, host:port (port 15012).
	Address string
	// Roots verify the server; typically the warren-ca-root-cert bundle.
	Roots *certs.TrustBundle
	// ServerID is the SPIFFE ID the server must present
	// (spiffe://<td>/ns/warren-system/sa/istiod-lite by default).
	ServerID spiffeid.ID
	// Token authenticates each call.
	Token TokenSource
	// DialOptions are appended to the client's own.
	DialOptions []grpc.DialOption
}

// Client calls CreateCertificate.
type Client struct {
	conn  *grpc.ClientConn
	api   cav1.CertificateServiceClient
	token TokenSource
}

// New dials lazily; the first call connects.
func New(opts Options) (*Client, error) {
	if opts.Address == "" || opts.Roots == nil || opts.Token == nil || opts.ServerID.IsZero() {
		return nil, errors.New("ca client: address, roots, server ID and token source are required")
	}
	tlsConf := TLSConfig(opts.Address, opts.Roots, opts.ServerID)
	dial := append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsConf))}, opts.DialOptions...)
	conn, err := grpc.NewClient(opts.Address, dial...)
	if err != nil {
		return nil, fmt.Errorf("ca client: %w", err)
	}
	return &Client{conn: conn, api: cav1.NewCertificateServiceClient(conn), token: opts.Token}, nil
}

// TLSConfig is how a client checks the CA: TLS 1.3 with ALPN h2, the
// server's chain verified against roots, and its SPIFFE ID required to be
// serverID (the certificate carries DNS names too, but the ID is what the
// control plane's identity is).
func TLSConfig(address string, roots *certs.TrustBundle, serverID spiffeid.ID) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		NextProtos:         []string{"h2"},
		InsecureSkipVerify: true, // verified below against the SPIFFE roots
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, _, err := roots.Verify(cs.PeerCertificates, time.Now())
			if err != nil {
				return fmt.Errorf("ca client: server %s: %w", address, err)
			}
			if id != serverID {
				return fmt.Errorf("ca client: server %s is %s, want %s", address, id, serverID)
			}
			return nil
		},
	}
}

// Close releases the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Result is a signed certificate chain plus the roots the CA reported.
type Result struct {
	SVID  *x509svid.SVID
	Roots []*x509.Certificate
}

// Sign generates a P-256 key, requests a certificate for id (zero ID: the
// caller's own identity) valid for ttl (0: the CA's default), and returns
// the SVID with the CA's current roots.
func (c *Client) Sign(ctx context.Context, id spiffeid.ID, ttl time.Duration) (*Result, error) {
	tok, err := c.token()
	if err != nil {
		return nil, err
	}
	key, err := certs.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("ca client: %w", err)
	}
	var csrDER []byte
	if id.IsZero() {
		csrDER, err = x509CreateCSR(key)
	} else {
		csrDER, err = certs.CreateCSR(key, id)
	}
	if err != nil {
		return nil, err
	}
	req := &cav1.CreateCertificateRequest{
		CsrPem:          string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER})),
		ValiditySeconds: int64(ttl / time.Second),
	}
	if !id.IsZero() {
		req.ImpersonatedIdentity = id.String()
	}
	resp, err := c.api.CreateCertificate(withBearer(ctx, tok), req)
	if err != nil {
		return nil, fmt.Errorf("ca client: CreateCertificate %s: %w", describe(id), err)
	}
	chain, err := certs.ParseCertificates([]byte(strings.Join(resp.GetCertChainPem(), "")))
	if err != nil {
		return nil, fmt.Errorf("ca client: response chain: %w", err)
	}
	svid, err := certs.SVIDFromChain(chain, key)
	if err != nil {
		return nil, fmt.Errorf("ca client: %w", err)
	}
	if !id.IsZero() && svid.ID != id {
		return nil, fmt.Errorf("ca client: asked for %s, CA issued %s", id, svid.ID)
	}
	res := &Result{SVID: svid}
	if len(resp.GetTrustBundlePem()) > 0 {
		if res.Roots, err = certs.ParseCertificates([]byte(strings.Join(resp.GetTrustBundlePem(), ""))); err != nil {
			return nil, fmt.Errorf("ca client: response trust bundle: %w", err)
		}
	}
	return res, nil
}

// Fetcher returns a certs.FetchFunc that obtains id's SVID through c, for
// a certs.IdentitySource.
func (c *Client) Fetcher(id spiffeid.ID, ttl time.Duration) certs.FetchFunc {
	return func(ctx context.Context) (*x509svid.SVID, error) {
		r, err := c.Sign(ctx, id, ttl)
		if err != nil {
			return nil, err
		}
		return r.SVID, nil
	}
}

func describe(id spiffeid.ID) string {
	if id.IsZero() {
		return "(own identity)"
	}
	return id.String()
}
