// Package cluster runs a real multi-node Kubernetes on one Linux machine
// without docker or a registry — Warren's kind — for e2e tests, conformance
// and `make demo`.
//
// Up builds (once, cached) etcd and the Kubernetes components with
// hack/kube-bins.sh, installs containerd, runc and the CNI plugins from Debian
// with hack/deps.sh, and starts:
//
//   - a control plane in the host network namespace: etcd, kube-apiserver
//     (client-certificate authn, Node+RBAC authz, NodeRestriction,
//     ServiceAccount tokens with issuer and keys), kube-controller-manager
//     (all default controllers, node lifecycle included) and kube-scheduler,
//     with a CA and certificates made here with crypto/x509;
//   - N nodes, each a network namespace on a host bridge with its own
//     containerd, kubelet (own root dir, cgroupRoot, pod logs dir, pod CIDR)
//     and kube-proxy (iptables mode), CNI = bridge + host-local + portmap and
//     a hook for chained plugins (Options.ExtraCNIPlugins);
//   - images built from static Go binaries with go-containerregistry
//     (BuildImage, BuildGoImage) and imported with ctr: a pause image and an
//     echo test application; third-party programs (CoreDNS, Istio's echo
//     server and client, the conformance module's echo-basic) built from the
//     module proxy by hack/image-bins.sh and packaged under the names the
//     Gateway API conformance manifests use (LoadConformanceImages);
//   - cluster DNS unless Options.SkipDNS: CoreDNS as kube-system/kube-dns on
//     the 10th Service address, named by every kubelet as clusterDNS.
//
// Down removes all of it and restores the sysctls the components changed;
// Snapshot and Leaks check that nothing is left. Everything lives under
// Options.StateDir and every machine-global name starts with Options.Name
// ("wk..."), so clusters and tests with other names can run beside it.
//
// The package owns the cluster's processes and OS state. It must not touch
// objects it did not create (no global iptables flush, no foreign links or
// cgroups), must not log (errors carry context; the localkube command logs),
// and must not be imported by anything outside e2e/.
package cluster
