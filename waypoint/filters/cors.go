package filters

import (
	"net/http"
	"strconv"
	"strings"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// CORS is a compiled CORS filter.
type CORS struct {
	anyOrigin   bool
	exact       map[string]bool
	wild        [][2]string // prefix, suffix around a "*"
	credentials bool
	methods     string
	anyMethod   bool
	headers     string
	anyHeader   bool
	expose      string
	maxAge      string
}

// CompileCORS compiles a CORS filter.
func CompileCORS(c *warrenv1.CORS) *CORS {
	out := &CORS{exact: map[string]bool{}, credentials: c.GetAllowCredentials()}
	for _, o := range c.GetAllowOrigins() {
		switch {
		case o == "*":
			out.anyOrigin = true
		case strings.Contains(o, "*"):
			i := strings.IndexByte(o, '*')
			out.wild = append(out.wild, [2]string{strings.ToLower(o[:i]), strings.ToLower(o[i+1:])})
		default:
			out.exact[strings.ToLower(o)] = true
		}
	}
	var ms []string
	for _, m := range c.GetAllowMethods() {
		if m == "*" {
			out.anyMethod = true
		}
		ms = append(ms, m)
	}
	out.methods = strings.Join(ms, ", ")
	for _, h := range c.GetAllowHeaders() {
		if h == "*" {
			out.anyHeader = true
		}
	}
	out.headers = strings.Join(c.GetAllowHeaders(), ", ")
	out.expose = strings.Join(c.GetExposeHeaders(), ", ")
	if c.GetMaxAgeSeconds() > 0 {
		out.maxAge = strconv.FormatUint(uint64(c.GetMaxAgeSeconds()), 10)
	}
	return out
}

// Allowed reports whether origin may make cross-origin requests.
func (c *CORS) Allowed(origin string) bool {
	if origin == "" {
		return false
	}
	if c.anyOrigin {
		return true
	}
	o := strings.ToLower(origin)
	if c.exact[o] {
		return true
	}
	for _, w := range c.wild {
		if len(o) > len(w[0])+len(w[1]) && strings.HasPrefix(o, w[0]) && strings.HasSuffix(o, w[1]) {
			return true
		}
	}
	return false
}

// IsPreflight reports whether r is a CORS preflight request.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get("Access-Control-Request-Method") != ""
}

func (c *CORS) allowOrigin(h http.Header, origin string) {
	// Credentials forbid "*": echo the origin then (and always, which is
	// also valid without credentials).
	h.Set("Access-Control-Allow-Origin", origin)
	h.Add("Vary", "Origin")
	if c.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// Preflight answers a preflight request: it fills h with the CORS
// response headers when the origin is allowed (nothing otherwise) and
// returns the status to answer with (204).
func (c *CORS) Preflight(r *http.Request, h http.Header) int {
	origin := r.Header.Get("Origin")
	if !c.Allowed(origin) {
		return http.StatusNoContent
	}
	c.allowOrigin(h, origin)
	if c.anyMethod {
		h.Set("Access-Control-Allow-Methods", r.Header.Get("Access-Control-Request-Method"))
	} else if c.methods != "" {
		h.Set("Access-Control-Allow-Methods", c.methods)
	}
	if c.anyHeader {
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			h.Set("Access-Control-Allow-Headers", req)
		}
	} else if c.headers != "" {
		h.Set("Access-Control-Allow-Headers", c.headers)
	}
	if c.expose != "" {
		h.Set("Access-Control-Expose-Headers", c.expose)
	}
	if c.maxAge != "" {
		h.Set("Access-Control-Max-Age", c.maxAge)
	}
	return http.StatusNoContent
}

// Actual adds CORS headers to the response of an actual (non-preflight)
// cross-origin request from an allowed origin.
func (c *CORS) Actual(r *http.Request, h http.Header) {
	origin := r.Header.Get("Origin")
	if !c.Allowed(origin) {
		return
	}
	c.allowOrigin(h, origin)
	if c.expose != "" {
		h.Set("Access-Control-Expose-Headers", c.expose)
	}
}
