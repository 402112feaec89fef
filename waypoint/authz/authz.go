package authz

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// Source is who sent the request, as the tunnel authenticated it.
type Source struct {
	// Identity is the client's SPIFFE ID ("" when unauthenticated).
	Identity string
	// Namespace is the namespace in the identity.
	Namespace string
}

// Request is what a rule can look at.
type Request struct {
	Source Source
	// Port is the destination Service port.
	Port   uint32
	Method string
	// Path is the normalized path without the query.
	Path   string
	Header http.Header
	// L4Only is set for opaque TCP: a rule with L7 conditions never
	// matches in an ALLOW policy, and in a DENY policy it matches on its
	// L4 conditions alone (the safe reading, as Istio does).
	L4Only bool
}

// Decision is the outcome of an evaluation.
type Decision struct {
	Allow bool
	// Policy is "<namespace>/<name>" of the deciding policy: the DENY that
	// matched, or "" when denied because no ALLOW policy matched.
	Policy string
	// Reason is "deny-policy", "no-allow-match", "allowed" or "no-policies".
	Reason string
}

// Evaluate applies policies (in any order) to q. Nil entries are skipped.
func Evaluate(policies []*warrenv1.Authorization, q *Request) Decision {
	haveAllow, allowed, allowBy := false, false, ""
	for _, p := range policies {
		if p == nil {
			continue
		}
		name := p.GetNamespace() + "/" + p.GetName()
		if p.GetAction() == warrenv1.Authorization_DENY {
			if matchesPolicy(p, q) {
				return Decision{Allow: false, Policy: name, Reason: "deny-policy"}
			}
			continue
		}
		haveAllow = true
		if !allowed && matchesPolicy(p, q) {
			allowed, allowBy = true, name
		}
	}
	switch {
	case !haveAllow:
		return Decision{Allow: true, Reason: "no-policies"}
	case allowed:
		return Decision{Allow: true, Policy: allowBy, Reason: "allowed"}
	}
	return Decision{Allow: false, Reason: "no-allow-match"}
}

func matchesPolicy(p *warrenv1.Authorization, q *Request) bool {
	deny := p.GetAction() == warrenv1.Authorization_DENY
	for _, r := range p.GetRules() {
		if q.L4Only && hasL7(r) {
			if !deny {
				continue
			}
			l4 := &warrenv1.AuthorizationRule{Identities: r.GetIdentities(), NotIdentities: r.GetNotIdentities(),
				Namespaces: r.GetNamespaces(), NotNamespaces: r.GetNotNamespaces(), Ports: r.GetPorts()}
			if matchesRule(l4, q) {
				return true
			}
			continue
		}
		if matchesRule(r, q) {
			return true
		}
	}
	return false
}

func matchesRule(r *warrenv1.AuthorizationRule, q *Request) bool {
	if len(r.GetIdentities()) > 0 && !anyMatch(r.GetIdentities(), q.Source.Identity, matchIdentity) {
		return false
	}
	if len(r.GetNotIdentities()) > 0 && anyMatch(r.GetNotIdentities(), q.Source.Identity, matchIdentity) {
		return false
	}
	if len(r.GetNamespaces()) > 0 && !slices.Contains(r.GetNamespaces(), q.Source.Namespace) {
		return false
	}
	if len(r.GetNotNamespaces()) > 0 && slices.Contains(r.GetNotNamespaces(), q.Source.Namespace) {
		return false
	}
	if len(r.GetPorts()) > 0 && !slices.Contains(r.GetPorts(), q.Port) {
		return false
	}
	if len(r.GetMethods()) > 0 && !slices.Contains(r.GetMethods(), q.Method) {
		return false
	}
	if len(r.GetPaths()) > 0 && !anyMatch(r.GetPaths(), q.Path, MatchPath) {
		return false
	}
	for _, h := range r.GetHeaders() {
		vs := q.Header[textproto.CanonicalMIMEHeaderKey(h.GetName())]
		ok := false
		for _, v := range vs {
			if anyMatch(h.GetValues(), v, matchValue) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func hasL7(r *warrenv1.AuthorizationRule) bool {
	return len(r.GetMethods()) > 0 || len(r.GetPaths()) > 0 || len(r.GetHeaders()) > 0
}

func anyMatch(patterns []string, s string, f func(pattern, s string) bool) bool {
	for _, p := range patterns {
		if f(p, s) {
			return true
		}
	}
	return false
}

// matchIdentity: exact, "*" for any authenticated identity, or a prefix
// with a trailing "*".
func matchIdentity(pattern, id string) bool {
	if id == "" {
		return false
	}
	if pattern == "*" {
		return true
	}
	if strings.HasSuffix(pattern, "*") {
		return strings.HasPrefix(id, pattern[:len(pattern)-1])
	}
	return pattern == id
}

// MatchPath matches a path pattern: exact, "*" for any, or a prefix with
// a trailing "*" ("/api/*" matches "/api/" and "/api/x", not "/api").
func MatchPath(pattern, path string) bool {
	if pattern == "*" {
		return true
	}
	if strings.HasSuffix(pattern, "*") {
		return strings.HasPrefix(path, pattern[:len(pattern)-1])
	}
	return pattern == path
}

// matchValue: exact, "*" any, "x*" prefix, "*x" suffix.
func matchValue(pattern, v string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasSuffix(pattern, "*"):
		return strings.HasPrefix(v, pattern[:len(pattern)-1])
	case strings.HasPrefix(pattern, "*"):
		return strings.HasSuffix(v, pattern[1:])
	}
	return pattern == v
}
