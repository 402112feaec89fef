package hbone

import (
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// checkRequest validates the header block of a request on a new stream
// (RFC 9113 §8.3 and §8.5, DESIGN §4) and returns the tunnel's authority
// and its regular headers, or the status to answer with instead:
// 431 for a header list over the limit, 405 for a method other than
// CONNECT, 400 for anything else malformed (missing or duplicate pseudo
// headers, :scheme/:path/:protocol, an authority that is not ip:port,
// connection-specific headers). It never panics, whatever the input.
func checkRequest(fields []hpack.HeaderField, truncated bool) (netip.AddrPort, http.Header, int) {
	if truncated {
		return netip.AddrPort{}, nil, http.StatusRequestHeaderFieldsTooLarge
	}
	var (
		method, authority      string
		haveMethod, haveAuth   bool
		extraPseudo, malformed bool
		regular                bool
		hdr                    http.Header
	)
	for _, f := range fields {
		if strings.HasPrefix(f.Name, ":") {
			switch {
			case regular: // pseudo header after a regular one
				malformed = true
			case f.Name == ":method":
				malformed = malformed || haveMethod
				method, haveMethod = f.Value, true
			case f.Name == ":authority":
				malformed = malformed || haveAuth
				authority, haveAuth = f.Value, true
			case f.Name == ":scheme" || f.Name == ":path" || f.Name == ":protocol":
				extraPseudo = true
			default:
				malformed = true
			}
			continue
		}
		regular = true
		if !validFieldName(f.Name) || !httpguts.ValidHeaderFieldValue(f.Value) || connectionSpecific(f.Name, f.Value) {
			malformed = true
			continue
		}
		if hdr == nil {
			hdr = make(http.Header)
		}
		k := textproto.CanonicalMIMEHeaderKey(f.Name)
		hdr[k] = append(hdr[k], f.Value)
	}
	switch {
	case !haveMethod || malformed:
		return netip.AddrPort{}, nil, http.StatusBadRequest
	case method != http.MethodConnect:
		return netip.AddrPort{}, nil, http.StatusMethodNotAllowed
	case extraPseudo || !haveAuth:
		return netip.AddrPort{}, nil, http.StatusBadRequest
	}
	ap, ok := parseAuthority(authority)
	if !ok {
		return netip.AddrPort{}, nil, http.StatusBadRequest
	}
	if hdr == nil {
		hdr = http.Header{}
	}
	return ap, hdr, 0
}

// parseAuthority accepts exactly ip:port (IPv6 in brackets), with a
// non-zero port, a specified address and no zone. IPv4-mapped IPv6
// addresses are unmapped.
func parseAuthority(s string) (netip.AddrPort, bool) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" || ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// validFieldName is an HTTP/2 field name: a non-empty lower-case token.
func validFieldName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !httpguts.IsTokenRune(r) || ('A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

// connectionSpecific reports header fields HTTP/2 forbids (RFC 9113 §8.2.2).
func connectionSpecific(name, value string) bool {
	switch name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		return true
	case "te":
		return value != "trailers"
	}
	return false
}

// FormatForwardedFor renders addr as an RFC 7239 Forwarded element
// (for=1.2.3.4, for="[2001:db8::1]").
func FormatForwardedFor(addr netip.Addr) string {
	addr = addr.Unmap()
	if addr.Is6() {
		return `for="[` + addr.String() + `]"`
	}
	return "for=" + addr.String()
}

// ParseForwardedFor returns the address in the first for= parameter of the
// first element of an RFC 7239 Forwarded header value (the original
// client), accepting an optional port and quotes.
func ParseForwardedFor(v string) (netip.Addr, bool) {
	elem, _, _ := strings.Cut(v, ",")
	for _, pair := range strings.Split(elem, ";") {
		k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(strings.TrimSpace(k), "for") {
			continue
		}
		val = strings.TrimSpace(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		if strings.HasPrefix(val, "[") {
			end := strings.IndexByte(val, ']')
			if end < 0 {
				return netip.Addr{}, false
			}
			rest := val[end+1:]
			if rest != "" && !validPort(rest) {
				return netip.Addr{}, false
			}
			val = val[1:end]
		} else if host, port, ok := strings.Cut(val, ":"); ok && !strings.Contains(port, ":") {
			if !validPort(":" + port) {
				return netip.Addr{}, false
			}
			val = host
		}
		addr, err := netip.ParseAddr(val)
		if err != nil || addr.Zone() != "" {
			return netip.Addr{}, false
		}
		return addr.Unmap(), true
	}
	return netip.Addr{}, false
}

// validPort accepts ":<1-65535>" (RFC 7239 also allows obfuscated ports,
// which carry nothing for us).
func validPort(s string) bool {
	if len(s) < 2 || s[0] != ':' {
		return false
	}
	n, err := strconv.ParseUint(s[1:], 10, 16)
	return err == nil && n > 0
}
