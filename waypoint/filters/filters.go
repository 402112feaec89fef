package filters

import (
	"math/rand/v2"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// HeaderMod is a compiled HeaderModifier.
type HeaderMod struct {
	set, add []kv
	remove   []string
	// host is the value to set as the Host (authority) when "host" is set.
	host string
}

type kv struct{ k, v string }

// CompileHeaderMod compiles a HeaderModifier (nil for nil).
func CompileHeaderMod(m *warrenv1.HeaderModifier) *HeaderMod {
	if m == nil {
		return nil
	}
	out := &HeaderMod{}
	for _, h := range m.GetSet() {
		if strings.EqualFold(h.GetName(), "host") {
			out.host = h.GetValue()
			continue
		}
		out.set = append(out.set, kv{textproto.CanonicalMIMEHeaderKey(h.GetName()), h.GetValue()})
	}
	for _, h := range m.GetAdd() {
		out.add = append(out.add, kv{textproto.CanonicalMIMEHeaderKey(h.GetName()), h.GetValue()})
	}
	for _, n := range m.GetRemove() {
		out.remove = append(out.remove, textproto.CanonicalMIMEHeaderKey(n))
	}
	return out
}

// Apply modifies h: set replaces, add appends, remove deletes (in that
// order, as the spec lists them).
func (m *HeaderMod) Apply(h http.Header) {
	if m == nil {
		return
	}
	for _, s := range m.set {
		h[s.k] = []string{s.v}
	}
	for _, a := range m.add {
		h[a.k] = append(h[a.k], a.v)
	}
	for _, r := range m.remove {
		delete(h, r)
	}
}

// ApplyRequest modifies a request's headers (and its Host when the
// modifier sets "host").
func (m *HeaderMod) ApplyRequest(r *http.Request) {
	if m == nil {
		return
	}
	if m.host != "" {
		r.Host = m.host
	}
	m.Apply(r.Header)
}

// Set is the compiled filter list of one route or backend.
type Set struct {
	Request  []*HeaderMod
	Response []*HeaderMod
	Redirect *warrenv1.Redirect
	Rewrite  *warrenv1.URLRewrite
	Mirrors  []*warrenv1.Mirror
	CORS     *CORS
}

// Compile compiles a filter list; nil when there are no filters.
func Compile(fs []*warrenv1.Filter) *Set {
	if len(fs) == 0 {
		return nil
	}
	s := &Set{}
	for _, f := range fs {
		switch k := f.GetKind().(type) {
		case *warrenv1.Filter_RequestHeaderModifier:
			s.Request = append(s.Request, CompileHeaderMod(k.RequestHeaderModifier))
		case *warrenv1.Filter_ResponseHeaderModifier:
			s.Response = append(s.Response, CompileHeaderMod(k.ResponseHeaderModifier))
		case *warrenv1.Filter_RequestRedirect:
			s.Redirect = k.RequestRedirect
		case *warrenv1.Filter_UrlRewrite:
			s.Rewrite = k.UrlRewrite
		case *warrenv1.Filter_RequestMirror:
			if k.RequestMirror.GetBackend() != nil {
				s.Mirrors = append(s.Mirrors, k.RequestMirror)
			}
		case *warrenv1.Filter_Cors:
			s.CORS = CompileCORS(k.Cors)
		}
	}
	return s
}

// ApplyRequest runs the request header modifiers of s (nil-safe).
func (s *Set) ApplyRequest(r *http.Request) {
	if s == nil {
		return
	}
	for _, m := range s.Request {
		m.ApplyRequest(r)
	}
}

// ApplyResponse runs the response header modifiers of s (nil-safe).
func (s *Set) ApplyResponse(h http.Header) {
	if s == nil {
		return
	}
	for _, m := range s.Response {
		m.Apply(h)
	}
}

// ReplacePrefix replaces the matched PathPrefix prefix of path with
// replacement on path-segment boundaries, as the Gateway API's
// HTTPPathModifier table specifies ("/foo/bar", "/foo", "/xyz" →
// "/xyz/bar"; "/foo", "/foo", "" → "/"). A trailing "/" on either prefix
// or replacement is not doubled. If path does not match prefix it is
// returned unchanged.
func ReplacePrefix(path, prefix, replacement string) string {
	p := strings.TrimRight(prefix, "/")
	if !strings.HasPrefix(path, p) || (len(path) > len(p) && path[len(p)] != '/') {
		return path
	}
	rest := path[len(p):]
	out := strings.TrimRight(replacement, "/") + rest
	if out == "" {
		return "/"
	}
	if out[0] != '/' {
		out = "/" + out
	}
	return out
}

// modifyPath applies a PathModifier to an escaped path.
func modifyPath(pm *warrenv1.PathModifier, path, matchedPrefix string) string {
	switch k := pm.GetKind().(type) {
	case *warrenv1.PathModifier_ReplaceFullPath:
		return k.ReplaceFullPath
	case *warrenv1.PathModifier_ReplacePrefixMatch:
		return ReplacePrefix(path, matchedPrefix, k.ReplacePrefixMatch)
	}
	return path
}

// RedirectLocation computes the Location and status code of a
// RequestRedirect for a request whose (escaped, normalized) path is path,
// addressed to listenerPort (the Service port in a mesh). Rules, from the
// Gateway API: the scheme is the filter's or the request's; the host the
// filter's or the request's Host without its port; the port is the
// filter's, else the well-known port of the filter's scheme (80, 443)
// when a scheme is set, else the listener port; the port is left out of
// Location when it is the scheme's default. The query is kept.
func RedirectLocation(rd *warrenv1.Redirect, r *http.Request, path, matchedPrefix string, listenerPort uint32) (string, int) {
	reqScheme := "http"
	if r.TLS != nil {
		reqScheme = "https"
	}
	scheme := rd.GetScheme()
	port := rd.GetPort()
	if port == 0 {
		switch {
		case scheme == "http":
			port = 80
		case scheme == "https":
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
		host = hostOnly(r.Host)
	}
	if (scheme == "http" && port == 80) || (scheme == "https" && port == 443) || port == 0 {
		if strings.IndexByte(host, ':') >= 0 {
			host = "[" + host + "]"
		}
	} else {
		host = net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
	}
	p := path
	if rd.GetPath() != nil {
		p = modifyPath(rd.GetPath(), path, matchedPrefix)
	}
	loc := scheme + "://" + host + p
	if r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	code := int(rd.GetStatusCode())
	switch code {
	case 301, 302, 303, 307, 308:
	default:
		code = 302
	}
	return loc, code
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
}

// Rewrite applies a URLRewrite to r: the Host, and the path (full
// replacement or prefix replacement on segment boundaries). path is the
// request's escaped, normalized path.
func Rewrite(rw *warrenv1.URLRewrite, r *http.Request, path, matchedPrefix string) {
	if rw == nil {
		return
	}
	if h := rw.GetHostname(); h != "" {
		r.Host = h
	}
	if rw.GetPath() == nil {
		return
	}
	SetPath(r, modifyPath(rw.GetPath(), path, matchedPrefix))
}

// SetPath replaces r's path with the escaped path p, keeping the query.
func SetPath(r *http.Request, p string) {
	u, err := url.Parse(p)
	if err != nil || u.Path == "" {
		r.URL.Path, r.URL.RawPath = p, ""
		return
	}
	r.URL.Path, r.URL.RawPath = u.Path, u.RawPath
}

// Sample reports whether a request is in the numerator/denominator
// fraction (100% when denominator is 0).
func Sample(num, den uint32) bool {
	if den == 0 || num >= den {
		return true
	}
	if num == 0 {
		return false
	}
	return rand.Uint32N(den) < num
}
