package main

// Authorization for trace, as the proxies evaluate it (waypoint/authz;
// trace_parity_test.go checks agreement): a matching DENY policy denies;
// with any ALLOW policy present, a request matching none is denied; no
// ALLOW policy allows. ztunnel evaluates L4 only: an ALLOW rule with
// method/path/header conditions never matches there, a DENY rule matches
// on its L4 conditions alone. A policy a proxy names but does not hold
// fails closed (an ALLOW that matches nothing).

import (
	"fmt"
	"net/http"
	"net/textproto"
	"slices"
	"strings"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// authzQuery is what a rule can look at.
type authzQuery struct {
	Identity  string // SPIFFE ID of the peer, "" when plaintext
	Namespace string // namespace of the peer identity
	Port      uint32
	Method    string
	Path      string
	Header    http.Header
	L4Only    bool
}

// authzVerdict is the outcome and why.
type authzVerdict struct {
	Allow bool `json:"allow"`
	// Policy decided: the DENY that matched or the ALLOW that allowed.
	Policy string `json:"policy,omitempty"`
	// Why in words.
	Why string `json:"why"`
}

// evaluatePolicies applies the named policies (resolved in all) to q.
func evaluatePolicies(names []string, all map[string]*warrenv1.Authorization, q authzQuery) authzVerdict {
	if len(names) == 0 {
		return authzVerdict{Allow: true, Why: "no authorization policy applies"}
	}
	var allows []string
	allowedBy := ""
	for _, name := range names {
		p, ok := all[name]
		if !ok {
			p = &warrenv1.Authorization{Name: name, Action: warrenv1.Authorization_ALLOW}
		}
		if p.GetAction() == warrenv1.Authorization_DENY {
			if i := matchingRule(p, q); i >= 0 {
				why := fmt.Sprintf("DENY policy %s matches (rule %d)", name, i)
				if q.L4Only && ruleHasL7(p.GetRules()[i]) {
					why = fmt.Sprintf("DENY policy %s rule %d matches: at L4 there is no HTTP to look at, so the rule's method/path/header conditions are dropped and what is left matches", name, i)
				}
				return authzVerdict{Allow: false, Policy: name, Why: why}
			}
			continue
		}
		allows = append(allows, name)
		if allowedBy == "" && matchingRule(p, q) >= 0 {
			allowedBy = name
		}
	}
	switch {
	case len(allows) == 0:
		return authzVerdict{Allow: true, Why: fmt.Sprintf("no DENY policy matches (%s) and no ALLOW policy applies", strings.Join(names, ", "))}
	case allowedBy != "":
		return authzVerdict{Allow: true, Policy: allowedBy, Why: "ALLOW policy " + allowedBy + " matches"}
	}
	why := "no rule of the ALLOW policies " + strings.Join(allows, ", ") + " matches, so the default is deny"
	if q.L4Only {
		why += " (at L4 there is no HTTP to look at: rules with method/path/header conditions never match)"
	}
	return authzVerdict{Allow: false, Why: why}
}

// matchingRule returns the index of the first rule of p matching q, or -1.
func matchingRule(p *warrenv1.Authorization, q authzQuery) int {
	deny := p.GetAction() == warrenv1.Authorization_DENY
	for i, r := range p.GetRules() {
		if q.L4Only && ruleHasL7(r) {
			if !deny {
				continue
			}
			l4 := &warrenv1.AuthorizationRule{Identities: r.GetIdentities(), NotIdentities: r.GetNotIdentities(),
				Namespaces: r.GetNamespaces(), NotNamespaces: r.GetNotNamespaces(), Ports: r.GetPorts()}
			if ruleMatches(l4, q) {
				return i
			}
			continue
		}
		if ruleMatches(r, q) {
			return i
		}
	}
	return -1
}

func ruleHasL7(r *warrenv1.AuthorizationRule) bool {
	return len(r.GetMethods()) > 0 || len(r.GetPaths()) > 0 || len(r.GetHeaders()) > 0
}

func ruleMatches(r *warrenv1.AuthorizationRule, q authzQuery) bool {
	if len(r.GetIdentities()) > 0 && !anyPattern(r.GetIdentities(), q.Identity, identityMatches) {
		return false
	}
	if len(r.GetNotIdentities()) > 0 && anyPattern(r.GetNotIdentities(), q.Identity, identityMatches) {
		return false
	}
	if len(r.GetNamespaces()) > 0 && !slices.Contains(r.GetNamespaces(), q.Namespace) {
		return false
	}
	if len(r.GetNotNamespaces()) > 0 && slices.Contains(r.GetNotNamespaces(), q.Namespace) {
		return false
	}
	if len(r.GetPorts()) > 0 && !slices.Contains(r.GetPorts(), q.Port) {
		return false
	}
	if len(r.GetMethods()) > 0 && !slices.Contains(r.GetMethods(), q.Method) {
		return false
	}
	if len(r.GetPaths()) > 0 && !anyPattern(r.GetPaths(), q.Path, policyPathMatches) {
		return false
	}
	for _, h := range r.GetHeaders() {
		ok := false
		for _, v := range q.Header[textproto.CanonicalMIMEHeaderKey(h.GetName())] {
			if anyPattern(h.GetValues(), v, policyValueMatches) {
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

func anyPattern(patterns []string, s string, f func(pattern, s string) bool) bool {
	for _, p := range patterns {
		if f(p, s) {
			return true
		}
	}
	return false
}

// identityMatches: exact, "*" for any authenticated peer, or a prefix
// with a trailing "*". A plaintext peer has no identity and matches none.
func identityMatches(pattern, id string) bool {
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

// policyPathMatches: exact, "*", or a prefix with a trailing "*".
func policyPathMatches(pattern, path string) bool {
	if pattern == "*" {
		return true
	}
	if strings.HasSuffix(pattern, "*") {
		return strings.HasPrefix(path, pattern[:len(pattern)-1])
	}
	return pattern == path
}

// policyValueMatches: exact, "*", "x*" prefix, "*x" suffix.
func policyValueMatches(pattern, v string) bool {
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

// identityNamespace extracts <ns> from spiffe://<td>/ns/<ns>/sa/<sa>.
func identityNamespace(id string) string {
	_, rest, ok := strings.Cut(id, "/ns/")
	if !ok {
		return ""
	}
	ns, _, _ := strings.Cut(rest, "/")
	return ns
}
