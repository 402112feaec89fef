package ca

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/warren-mesh/warren/certs"
)

// Audience is the token audience the CA accepts.
const Audience = "warren-ca"

// NodeNameExtra is the TokenReview extra key carrying the node a pod-bound
// ServiceAccount token was issued for.
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// ErrUnauthenticated wraps every authentication failure.
var ErrUnauthenticated = errors.New("unauthenticated")

// Caller is an authenticated client of the CA.
type Caller struct {
	// Namespace and ServiceAccount name the caller's Kubernetes identity.
	Namespace, ServiceAccount string
	// ID is the caller's own SPIFFE identity.
	ID spiffeid.ID
	// Node is the node the caller's token is bound to ("" if not bound).
	// It comes only from the token, never from the request.
	Node string
}

// Authenticator turns a bearer token into a Caller.
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (*Caller, error)
}

// TokenReviewAuthenticator validates ServiceAccount tokens with the
// Kubernetes TokenReview API for the warren-ca audience. Successful reviews
// are cached briefly so a node proxy fetching many certificates with one
// token costs one review.
type TokenReviewAuthenticator struct {
	Client      kubernetes.Interface
	TrustDomain spiffeid.TrustDomain
	// CacheTTL bounds how long a review result is reused. Default 10s;
	// negative disables the cache.
	CacheTTL time.Duration

	mu    sync.Mutex
	cache map[[32]byte]cachedCaller
}

type cachedCaller struct {
	caller  *Caller
	expires time.Time
}

const maxCachedTokens = 4096

// Authenticate implements Authenticator.
func (a *TokenReviewAuthenticator) Authenticate(ctx context.Context, token string) (*Caller, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	ttl := a.CacheTTL
	if ttl == 0 {
		ttl = 10 * time.Second
	}
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	if ttl > 0 {
		a.mu.Lock()
		if c, ok := a.cache[key]; ok && now.Before(c.expires) {
			a.mu.Unlock()
			return c.caller, nil
		}
		a.mu.Unlock()
	}
	tr, err := a.Client.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("ca: token review: %w", err)
	}
	st := tr.Status
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "token rejected"
		}
		return nil, fmt.Errorf("%w: token review: %s", ErrUnauthenticated, msg)
	}
	if !contains(st.Audiences, Audience) {
		return nil, fmt.Errorf("%w: token audiences %v do not include %q", ErrUnauthenticated, st.Audiences, Audience)
	}
	ns, sa, ok := parseSAUsername(st.User.Username)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a service account", ErrUnauthenticated, st.User.Username)
	}
	c, err := newCaller(a.TrustDomain, ns, sa)
	if err != nil {
		return nil, err
	}
	if nodes := st.User.Extra[NodeNameExtra]; len(nodes) == 1 {
		c.Node = nodes[0]
	}
	if ttl > 0 {
		a.mu.Lock()
		if a.cache == nil || len(a.cache) >= maxCachedTokens {
			a.cache = make(map[[32]byte]cachedCaller)
		}
		a.cache[key] = cachedCaller{caller: c, expires: now.Add(ttl)}
		a.mu.Unlock()
	}
	return c, nil
}

func parseSAUsername(u string) (ns, sa string, ok bool) {
	const prefix = "system:serviceaccount:"
	if !strings.HasPrefix(u, prefix) {
		return "", "", false
	}
	parts := strings.Split(strings.TrimPrefix(u, prefix), ":")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

func newCaller(td spiffeid.TrustDomain, ns, sa string) (*Caller, error) {
	id, err := certs.WorkloadID(td, ns, sa)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	return &Caller{Namespace: ns, ServiceAccount: sa, ID: id}, nil
}

// BootstrapToken is one entry of a bootstrap token file.
type BootstrapToken struct {
	// Token is the bearer secret.
	Token string `json:"token"`
	// ServiceAccount is "<namespace>/<name>": the identity the token stands for.
	ServiceAccount string `json:"serviceAccount"`
	// Node binds the token to a node, as a pod-bound token would be.
	Node string `json:"node,omitempty"`
}

// BootstrapTokenFile is the YAML layout of a bootstrap token file:
//
//	tokens:
//	- token: 6f1c…           # at least 16 characters
//	  serviceAccount: warren-system/ztunnel
//	  node: node-a           # optional
type BootstrapTokenFile struct {
	Tokens []BootstrapToken `json:"tokens"`
}

// StaticAuthenticator authenticates bootstrap tokens (file mode, no cluster).
type StaticAuthenticator struct {
	entries []staticEntry
}

type staticEntry struct {
	hash   [32]byte
	caller *Caller
}

// LoadBootstrapTokens reads and validates a bootstrap token file.
func LoadBootstrapTokens(path string, td spiffeid.TrustDomain) (*StaticAuthenticator, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("ca: bootstrap tokens: %w", err)
	}
	var f BootstrapTokenFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("ca: bootstrap tokens %s: %w", path, err)
	}
	return NewStaticAuthenticator(td, f.Tokens, path)
}

// NewStaticAuthenticator validates tokens; source names them in errors.
func NewStaticAuthenticator(td spiffeid.TrustDomain, tokens []BootstrapToken, source string) (*StaticAuthenticator, error) {
	a := &StaticAuthenticator{}
	seen := map[[32]byte]bool{}
	for i, t := range tokens {
		where := fmt.Sprintf("ca: bootstrap tokens %s: tokens[%d]", source, i)
		if len(t.Token) < 16 {
			return nil, fmt.Errorf("%s.token: must be at least 16 characters", where)
		}
		ns, sa, ok := strings.Cut(t.ServiceAccount, "/")
		if !ok || ns == "" || sa == "" || strings.Contains(sa, "/") {
			return nil, fmt.Errorf("%s.serviceAccount: %q is not <namespace>/<name>", where, t.ServiceAccount)
		}
		c, err := newCaller(td, ns, sa)
		if err != nil {
			return nil, fmt.Errorf("%s.serviceAccount: %v", where, err)
		}
		c.Node = t.Node
		h := sha256.Sum256([]byte(t.Token))
		if seen[h] {
			return nil, fmt.Errorf("%s.token: duplicate token", where)
		}
		seen[h] = true
		a.entries = append(a.entries, staticEntry{hash: h, caller: c})
	}
	return a, nil
}

// Authenticate implements Authenticator in constant time per entry.
func (a *StaticAuthenticator) Authenticate(_ context.Context, token string) (*Caller, error) {
	if token == "" {
		return nil, fmt.Errorf("%w: no bearer token", ErrUnauthenticated)
	}
	h := sha256.Sum256([]byte(token))
	var found *Caller
	for _, e := range a.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 {
			found = e.caller
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: unknown bootstrap token", ErrUnauthenticated)
	}
	return found, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
