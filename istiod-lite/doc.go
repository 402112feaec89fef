// Package istiodlite is Warren's control plane: it watches Kubernetes (or a
// directory of YAML), turns Gateway API and GAMMA objects into per-proxy
// configuration pushed over delta xDS, issues workload certificates, and
// writes status back.
//
// Sub-packages own one job each: api (wire types), ca (certificate
// service), and later source, model, translate, xds, status, deploy, debug.
// Nothing under istiod-lite imports the data plane (ztunnel, waypoint,
// redirect); the data plane may import only istiod-lite/api and the client
// packages (istiod-lite/ca/client, istiod-lite/xds/client).
package istiodlite
