package main

import (
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// filters describes the matched route's filters in the waypoint's order
// (CORS preflight and redirect answer at once; then rewrite, request
// header modifiers, mirrors). It returns true when the waypoint answers
// itself, with t.p.Result set.
func (t *tracer) filters(at string, r *warrenv1.Route, port uint32) bool {
	fs := r.GetFilters()
	if len(fs) == 0 {
		return false
	}
	var details []string
	prefix := ""
	if p := r.GetMatch().GetPath(); p.GetType() == warrenv1.MatchType_PREFIX {
		prefix = p.GetValue()
	}
	path := t.q.Path
	for _, f := range fs {
		switch k := f.GetKind().(type) {
		case *warrenv1.Filter_Cors:
			if t.q.Method == http.MethodOptions && t.q.Header.Get("Origin") != "" && t.q.Header.Get("Access-Control-Request-Method") != "" {
				t.hop("filters", at, "CORS preflight answered by the waypoint: 204", "allowed origins: "+dash(strings.Join(k.Cors.GetAllowOrigins(), ", ")))
				t.p.Result = traceResult{Outcome: outcomeRedirect, Status: http.StatusNoContent, Summary: "204: CORS preflight answered by the waypoint"}
				return true
			}
			details = append(details, "CORS: response headers for origins "+dash(strings.Join(k.Cors.GetAllowOrigins(), ", ")))
		case *warrenv1.Filter_RequestRedirect:
			loc, code := t.redirectLocation(k.RequestRedirect, prefix, port)
			t.hop("filters", at, fmt.Sprintf("RequestRedirect: answers %d", code), "Location: "+loc)
			t.p.Result = traceResult{Outcome: outcomeRedirect, Status: code, Location: loc, Summary: fmt.Sprintf("%d redirect to %s (no backend is called)", code, loc)}
			return true
		case *warrenv1.Filter_UrlRewrite:
			if h := k.UrlRewrite.GetHostname(); h != "" {
				details = append(details, "URLRewrite: Host becomes "+h)
			}
			if pm := k.UrlRewrite.GetPath(); pm != nil {
				np := modifyPath(pm, path, prefix)
				details = append(details, fmt.Sprintf("URLRewrite: path %s becomes %s", path, np))
				path = np
			}
		case *warrenv1.Filter_RequestHeaderModifier:
			details = append(details, "request headers: "+headerChanges(k.RequestHeaderModifier))
		case *warrenv1.Filter_ResponseHeaderModifier:
			details = append(details, "response headers: "+headerChanges(k.ResponseHeaderModifier))
		case *warrenv1.Filter_RequestMirror:
			m := k.RequestMirror
			frac := "100%"
			if d := m.GetDenominator(); d > 0 && m.GetNumerator() < d {
				frac = percent(100 * float64(m.GetNumerator()) / float64(d))
			}
			details = append(details, fmt.Sprintf("mirror %s of requests to %s:%d (fire and forget; its answer is dropped)", frac, m.GetBackend().GetService(), m.GetBackend().GetPort()))
		}
	}
	t.hop("filters", at, fmt.Sprintf("%d filter(s) applied", len(fs)), details...)
	return false
}

// redirectLocation mirrors the waypoint's RequestRedirect: the filter's
// scheme or the request's; the filter's hostname or the request's Host
// without port; the filter's port, else the scheme's well-known port when
// the filter sets a scheme, else the Service port; default ports are left
// out; the query is kept.
func (t *tracer) redirectLocation(rd *warrenv1.Redirect, matchedPrefix string, listenerPort uint32) (string, int) {
	reqScheme := "http"
	if t.scheme == "https" {
		reqScheme = "https"
	}
	scheme := rd.GetScheme()
	port := rd.GetPort()
	if port == 0 {
		switch scheme {
		case "http":
			port = 80
		case "https":
			port = 443
		default:
			port = listenerPort
		}
	}
	if scheme == "" {
		scheme = reqScheme
	}
	host := rd.GetHostname()
	if host == "" {
		host = t.q.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if (scheme == "http" && port == 80) || (scheme == "https" && port == 443) || port == 0 {
		if strings.IndexByte(host, ':') >= 0 {
			host = "[" + host + "]"
		}
	} else {
		host = net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
	}
	p := t.q.Path
	if rd.GetPath() != nil {
		p = modifyPath(rd.GetPath(), p, matchedPrefix)
	}
	loc := scheme + "://" + host + p
	if t.q.RawQuery != "" {
		loc += "?" + t.q.RawQuery
	}
	code := int(rd.GetStatusCode())
	switch code {
	case 301, 302, 303, 307, 308:
	default:
		code = 302
	}
	return loc, code
}

// modifyPath applies a path modifier (full replacement, or the matched
// prefix replaced on a segment boundary).
func modifyPath(pm *warrenv1.PathModifier, path, matchedPrefix string) string {
	switch k := pm.GetKind().(type) {
	case *warrenv1.PathModifier_ReplaceFullPath:
		return k.ReplaceFullPath
	case *warrenv1.PathModifier_ReplacePrefixMatch:
		p := strings.TrimRight(matchedPrefix, "/")
		if !strings.HasPrefix(path, p) || (len(path) > len(p) && path[len(p)] != '/') {
			return path
		}
		out := strings.TrimRight(k.ReplacePrefixMatch, "/") + path[len(p):]
		if out == "" {
			return "/"
		}
		if out[0] != '/' {
			out = "/" + out
		}
		return out
	}
	return path
}

func headerChanges(h *warrenv1.HeaderModifier) string {
	var parts []string
	for _, x := range h.GetSet() {
		parts = append(parts, "set "+x.GetName()+": "+x.GetValue())
	}
	for _, x := range h.GetAdd() {
		parts = append(parts, "add "+x.GetName()+": "+x.GetValue())
	}
	for _, x := range h.GetRemove() {
		parts = append(parts, "remove "+x)
	}
	return dash(strings.Join(parts, "; "))
}
