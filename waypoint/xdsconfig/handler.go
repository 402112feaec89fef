package xdsconfig

import (
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/warren-mesh/warren/certs"
	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
	"github.com/warren-mesh/warren/waypoint"
)

// Types are the resource types a waypoint subscribes to, in subscription
// order: the trust bundle first, so the roots are current before anything
// else arrives.
var Types = []string{client.TypeTrustBundle, client.TypeWorkload, client.TypeService, client.TypeAuthorization, client.TypeL7Service}

// Options configure a Handler.
type Options struct {
	// Store receives L7Services, Services, Workloads and Authorizations.
	// Required.
	Store *waypoint.Store
	// Bundle receives the TrustBundle's roots (it is the bundle both TLS
	// sides of the waypoint verify peers with). Required.
	Bundle *certs.TrustBundle
	// Now is the clock for status times; default time.Now.
	Now func() time.Time
}

// TypeStatus is what one resource type's updates did (admin endpoints,
// metrics).
type TypeStatus struct {
	// Resources held now.
	Resources int `json:"resources"`
	// Applied and Rejected count updates (xDS responses, file loads).
	Applied  int `json:"applied"`
	Rejected int `json:"rejected"`
	// LastApplied is when an update was last accepted.
	LastApplied time.Time `json:"lastApplied,omitzero"`
	// LastError is the last rejection's reason, kept until the next
	// accepted update of the type.
	LastError     string    `json:"lastError,omitempty"`
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
}

// Handler applies configuration to a Store and a TrustBundle. It
// implements client.Handler; calls must be serialized (the xDS client
// does so), Status and Synced may run concurrently.
type Handler struct {
	opts Options

	mu sync.Mutex
	st map[string]*TypeStatus
}

var _ client.Handler = (*Handler)(nil)

// New returns a Handler.
func New(o Options) (*Handler, error) {
	if o.Store == nil || o.Bundle == nil {
		return nil, errors.New("waypoint: xds config: Options.Store and Options.Bundle are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	h := &Handler{opts: o, st: map[string]*TypeStatus{}}
	for _, t := range Types {
		h.st[t] = &TypeStatus{}
	}
	return h, nil
}

// Apply implements client.Handler: it applies one response of typeURL.
// An error leaves the Store and the bundle as they were.
func (h *Handler) Apply(typeURL string, upserts map[string]proto.Message, removes []string) error {
	var err error
	if typeURL == client.TypeTrustBundle {
		err = h.applyBundle(upserts, removes)
	} else {
		err = h.applyStore(typeURL, upserts, removes)
	}
	h.record(typeURL, err)
	return err
}

func (h *Handler) applyStore(typeURL string, upserts map[string]proto.Message, removes []string) error {
	if err := checkTypes(typeURL, upserts); err != nil {
		return err
	}
	err := h.opts.Store.Update(func(c *waypoint.Config) {
		switch typeURL {
		case client.TypeL7Service:
			merge(c.L7Services, upserts, removes)
		case client.TypeService:
			merge(c.Services, upserts, removes)
		case client.TypeWorkload:
			merge(c.Workloads, upserts, removes)
		case client.TypeAuthorization:
			merge(c.Authorizations, upserts, removes)
		}
	})
	if err != nil {
		return fmt.Errorf("waypoint: xds config: %s: %w", shortType(typeURL), err)
	}
	return nil
}

// checkTypes verifies every upsert is the message type typeURL names.
func checkTypes(typeURL string, upserts map[string]proto.Message) error {
	for _, name := range sortedNames(upserts) {
		m := upserts[name]
		var ok bool
		switch typeURL {
		case client.TypeL7Service:
			_, ok = m.(*warrenv1.L7Service)
		case client.TypeService:
			_, ok = m.(*warrenv1.Service)
		case client.TypeWorkload:
			_, ok = m.(*warrenv1.Workload)
		case client.TypeAuthorization:
			_, ok = m.(*warrenv1.Authorization)
		default:
			return fmt.Errorf("waypoint: xds config: type %s is not one a waypoint uses", typeURL)
		}
		if !ok || m == nil {
			return fmt.Errorf("waypoint: xds config: %s %q: got a %T", shortType(typeURL), name, m)
		}
	}
	return nil
}

func merge[V proto.Message](dst map[string]V, upserts map[string]proto.Message, removes []string) {
	for _, n := range removes {
		delete(dst, n)
	}
	for n, m := range upserts {
		dst[n] = m.(V)
	}
}

// applyBundle replaces the bundle's roots. A removal keeps the roots held:
// a waypoint never drops to trusting nothing.
func (h *Handler) applyBundle(upserts map[string]proto.Message, _ []string) error {
	if len(upserts) == 0 {
		return nil
	}
	roots, err := h.bundleRoots(upserts)
	if err != nil {
		return err
	}
	h.opts.Bundle.Set(roots)
	return nil
}

func (h *Handler) bundleRoots(upserts map[string]proto.Message) ([]*x509.Certificate, error) {
	var roots []*x509.Certificate
	for _, name := range sortedNames(upserts) {
		tb, ok := upserts[name].(*warrenv1.TrustBundle)
		switch {
		case name != client.TrustBundleName:
			return nil, fmt.Errorf("waypoint: xds config: TrustBundle %q: the only bundle is %q", name, client.TrustBundleName)
		case !ok || tb == nil:
			return nil, fmt.Errorf("waypoint: xds config: TrustBundle %q: got a %T", name, upserts[name])
		case tb.GetTrustDomain() != h.opts.Bundle.TrustDomain().Name():
			return nil, fmt.Errorf("waypoint: xds config: TrustBundle for trust domain %q, this waypoint is in %q", tb.GetTrustDomain(), h.opts.Bundle.TrustDomain().Name())
		}
		for i, p := range tb.GetRootsPem() {
			cs, err := certs.ParseCertificates([]byte(p))
			if err != nil {
				return nil, fmt.Errorf("waypoint: xds config: TrustBundle roots_pem[%d]: %w", i, err)
			}
			for _, c := range cs {
				if !c.IsCA {
					return nil, fmt.Errorf("waypoint: xds config: TrustBundle roots_pem[%d]: %q is not a CA certificate", i, c.Subject)
				}
			}
			roots = append(roots, cs...)
		}
	}
	if len(roots) == 0 {
		return nil, errors.New("waypoint: xds config: TrustBundle holds no root: refusing to trust nothing")
	}
	return roots, nil
}

func (h *Handler) record(typeURL string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := h.st[typeURL]
	if st == nil {
		st = &TypeStatus{}
		h.st[typeURL] = st
	}
	now := h.opts.Now()
	if err != nil {
		st.Rejected++
		st.LastError, st.LastErrorTime = err.Error(), now
		return
	}
	st.Applied++
	st.LastApplied = now
	st.LastError, st.LastErrorTime = "", time.Time{}
}

// Synced returns nil once every type in Types has had an update accepted,
// else an error naming those still missing (with their last rejection).
// A type whose only updates were rejected keeps the waypoint unready:
// serving with an empty route table would turn all traffic into 404s.
func (h *Handler) Synced() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	var missing []string
	for _, t := range Types {
		st := h.st[t]
		if st.Applied > 0 {
			continue
		}
		m := shortType(t)
		if st.LastError != "" {
			m += " (rejected: " + st.LastError + ")"
		}
		missing = append(missing, m)
	}
	if len(missing) > 0 {
		return fmt.Errorf("no configuration accepted yet for %s", strings.Join(missing, ", "))
	}
	return nil
}

// Status reports each type's updates, by short type name (L7Service, …).
func (h *Handler) Status() map[string]TypeStatus {
	cfg := h.opts.Store.Config()
	counts := map[string]int{
		client.TypeL7Service: len(cfg.L7Services), client.TypeService: len(cfg.Services),
		client.TypeWorkload: len(cfg.Workloads), client.TypeAuthorization: len(cfg.Authorizations),
	}
	if len(h.opts.Bundle.Roots()) > 0 {
		counts[client.TypeTrustBundle] = 1
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]TypeStatus, len(h.st))
	for t, st := range h.st {
		s := *st
		s.Resources = counts[t]
		out[shortType(t)] = s
	}
	return out
}

// shortType is the message name of a type URL ("L7Service").
func shortType(t string) string {
	if i := strings.LastIndexByte(t, '.'); i >= 0 {
		return t[i+1:]
	}
	return t
}

func sortedNames(m map[string]proto.Message) []string {
	ns := make([]string, 0, len(m))
	for n := range m {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}
