package main

import (
	"testing"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
)

func TestMatchCovers(t *testing.T) {
	prefix := func(v string) *warrenv1.PathMatch {
		return &warrenv1.PathMatch{Type: warrenv1.MatchType_PREFIX, Value: v}
	}
	exact := func(v string) *warrenv1.PathMatch {
		return &warrenv1.PathMatch{Type: warrenv1.MatchType_EXACT, Value: v}
	}
	regex := func(v string) *warrenv1.PathMatch {
		return &warrenv1.PathMatch{Type: warrenv1.MatchType_REGEX, Value: v}
	}
	hdr := func(n, v string) []*warrenv1.HeaderMatch { return []*warrenv1.HeaderMatch{{Name: n, Value: v}} }
	for _, c := range []struct {
		name string
		a, b *warrenv1.RouteMatch
		want bool
	}{
		{"catch-all covers everything", &warrenv1.RouteMatch{Path: prefix("/")}, &warrenv1.RouteMatch{Path: exact("/x"), Method: "GET"}, true},
		{"prefix covers a longer prefix on a segment", &warrenv1.RouteMatch{Path: prefix("/api")}, &warrenv1.RouteMatch{Path: prefix("/api/v1")}, true},
		{"prefix does not cover across a segment", &warrenv1.RouteMatch{Path: prefix("/api")}, &warrenv1.RouteMatch{Path: prefix("/apiv1")}, false},
		{"trailing slash is the same prefix", &warrenv1.RouteMatch{Path: prefix("/v1/")}, &warrenv1.RouteMatch{Path: prefix("/v1")}, true},
		{"prefix covers an exact path under it", &warrenv1.RouteMatch{Path: prefix("/a")}, &warrenv1.RouteMatch{Path: exact("/a/b")}, true},
		{"exact covers only itself", &warrenv1.RouteMatch{Path: exact("/a")}, &warrenv1.RouteMatch{Path: prefix("/a")}, false},
		{"regex covers only the same regex", &warrenv1.RouteMatch{Path: regex("/a.*")}, &warrenv1.RouteMatch{Path: exact("/ab")}, false},
		{"identical regex", &warrenv1.RouteMatch{Path: regex("/a.*")}, &warrenv1.RouteMatch{Path: regex("/a.*")}, true},
		{"a method narrows", &warrenv1.RouteMatch{Path: prefix("/"), Method: "GET"}, &warrenv1.RouteMatch{Path: prefix("/")}, false},
		{"a header narrows", &warrenv1.RouteMatch{Path: prefix("/"), Headers: hdr("x", "1")}, &warrenv1.RouteMatch{Path: prefix("/")}, false},
		{"same header, more conditions", &warrenv1.RouteMatch{Path: prefix("/"), Headers: hdr("X", "1")}, &warrenv1.RouteMatch{Path: exact("/a"), Headers: hdr("x", "1")}, true},
		{"gRPC service covers a method of it", &warrenv1.RouteMatch{Grpc: &warrenv1.GRPCMethodMatch{Service: "s"}}, &warrenv1.RouteMatch{Grpc: &warrenv1.GRPCMethodMatch{Service: "s", Method: "M"}}, true},
		{"gRPC method does not cover the service", &warrenv1.RouteMatch{Grpc: &warrenv1.GRPCMethodMatch{Service: "s", Method: "M"}}, &warrenv1.RouteMatch{Grpc: &warrenv1.GRPCMethodMatch{Service: "s"}}, false},
	} {
		if got := matchCovers(c.a, c.b); got != c.want {
			t.Errorf("%s: matchCovers = %v", c.name, got)
		}
	}
}
