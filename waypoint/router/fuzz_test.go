package router

import (
	"net/http"
	"strings"
	"testing"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

// FuzzMatch compiles a route from fuzzed match values and matches fuzzed
// requests against it: no panics, and prefix matching agrees with a
// segment-by-segment reference.
func FuzzMatch(f *testing.F) {
	f.Add("/abc", "/abc/def", "x-a", "1", "k=v", uint8(1))
	f.Add("/", "/", "", "", "", uint8(0))
	f.Add("/a/", "/a/../b", "host", "echo", "%zz", uint8(2))
	f.Add("[", "/re", "x", "(", "a=b&a=c", uint8(2))
	f.Fuzz(func(t *testing.T, value, reqPath, hname, hvalue, query string, kind uint8) {
		mt := warrenv1.MatchType(kind % 3)
		m := &warrenv1.RouteMatch{Path: &warrenv1.PathMatch{Type: mt, Value: value}}
		if hname != "" {
			m.Headers = []*warrenv1.HeaderMatch{{Type: mt, Name: strings.ToLower(hname), Value: hvalue}}
		}
		tbl, err := CompileTable(&warrenv1.RouteTable{Routes: []*warrenv1.Route{{Match: m}}})
		if err != nil {
			return
		}
		p := NormalizePath(reqPath)
		if NormalizePath(p) != p {
			t.Fatalf("NormalizePath not idempotent: %q → %q → %q", reqPath, p, NormalizePath(p))
		}
		q := Request{Method: "GET", Path: p, RawQuery: query, Header: http.Header{http.CanonicalHeaderKey(hname): {hvalue}}, Host: hvalue}
		_ = tbl.Match(&q)
		if mt == warrenv1.MatchType_PREFIX {
			pt, err := CompileTable(&warrenv1.RouteTable{Routes: []*warrenv1.Route{{Match: &warrenv1.RouteMatch{Path: m.Path}}}})
			if err != nil {
				t.Fatal(err)
			}
			if got := pt.Match(&q) != nil; got != refPrefix(value, p) {
				t.Fatalf("prefix %q path %q: matched %v, reference %v", value, p, got, !got)
			}
		}
		_, _, _ = GRPCMethod(reqPath)
	})
}

// refPrefix: element-wise prefix match by splitting on "/".
func refPrefix(prefix, path string) bool {
	ps := strings.Split(strings.Trim(prefix, "/"), "/")
	if strings.Trim(prefix, "/") == "" {
		ps = nil
	}
	if strings.Contains(strings.TrimRight(prefix, "/"), "//") || (prefix != "" && prefix[0] != '/') {
		return PrefixMatches(prefix, path) // not a valid Gateway API prefix; no reference
	}
	xs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(ps) > len(xs) {
		return false
	}
	for i := range ps {
		if ps[i] != xs[i] {
			return false
		}
	}
	return true
}
