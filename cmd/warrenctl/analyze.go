package main

// analyze finds misconfigurations in a mesh view. Each check is a pure
// function of the objects, their translation and, when known, live
// state (syncz, trust bundle roots). Every finding has a stable code
// (analyze_codes.go) and a fix.

import (
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/labels"

	"github.com/warren-mesh/warren/istiod-lite/xds"
)

type analyzeInput struct {
	m   *mesh
	now time.Time
	// roots of the trust bundle (nil: unknown, the root checks skip).
	roots []rootInfo
	// rootWarn is how soon an expiry is worth a warning.
	rootWarn time.Duration
	// syncz is istiod-lite's stream list (nil: unknown, live checks skip).
	syncz []xds.ProxyStatus
	// ztunnels selects ztunnel pods in the system namespace.
	ztunnels labels.Selector
}

// rootInfo is one trust bundle root, from its certificate or from
// istiod-lite's /debug/ca.
type rootInfo struct {
	Subject  string
	Serial   string
	NotAfter time.Time
}

type analyzer struct {
	analyzeInput
	out []finding
}

func (a *analyzer) report(code, kind, ns, name, msg, fix string) {
	a.out = append(a.out, finding{Code: code, Severity: severityOf(code), Kind: kind, Namespace: ns, Name: name, Message: msg, Fix: fix})
}

// analyzeMesh runs every check and returns the findings in a stable
// order: namespace, kind, name, code, message.
func analyzeMesh(in analyzeInput) []finding {
	a := &analyzer{analyzeInput: in}
	a.waypointLabels()
	a.waypointReadiness()
	a.routeStatus()
	a.shadowedRoutes()
	a.grpcAppProtocol()
	a.ztunnelCoverage()
	a.proxySync()
	a.policies()
	a.strictMTLS()
	a.rootExpiry()
	slices.SortFunc(a.out, func(x, y finding) int {
		for _, c := range [][2]string{{x.Namespace, y.Namespace}, {x.Kind, y.Kind}, {x.Name, y.Name}, {x.Code, y.Code}, {x.Message, y.Message}} {
			if d := strings.Compare(c[0], c[1]); d != 0 {
				return d
			}
		}
		return 0
	})
	return slices.CompactFunc(a.out, func(x, y finding) bool { return x == y })
}

// filterFindings keeps the findings of namespace ns; findings without a
// namespace (nodes of the whole cluster, the trust bundle, ztunnels)
// concern every namespace and are kept.
func filterFindings(fs []finding, ns string) []finding {
	if ns == "" {
		return fs
	}
	var out []finding
	for _, f := range fs {
		if f.Namespace == ns || f.Namespace == "" {
			out = append(out, f)
		}
	}
	return out
}
