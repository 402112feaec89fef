package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The control plane runs in the host network namespace. kube-apiserver
// listens only on the bridge address (reachable from every node namespace and
// from the host, and never colliding with a service on another address);
// etcd, kube-controller-manager and kube-scheduler listen on 127.0.0.1, where
// no pod can reach them.

func (l layout) controlPlane() []daemon {
	v := fmt.Sprint(l.Verbosity)
	d := func(name string, args ...string) daemon {
		return daemon{
			Name:    name,
			Bin:     l.bin(name),
			Args:    args,
			LogFile: filepath.Join(l.LogDir, name+".log"),
			PIDFile: filepath.Join(l.RunDir, name+".pid"),
		}
	}
	etcdClient := fmt.Sprintf("http://127.0.0.1:%d", l.EtcdPort)
	etcdPeer := fmt.Sprintf("http://127.0.0.1:%d", l.EtcdPort+1)
	kcmControllers := "*,bootstrapsigner,tokencleaner"
	return []daemon{
		d("etcd",
			"--name=localkube",
			"--data-dir="+l.EtcdDir,
			"--listen-client-urls="+etcdClient,
			"--advertise-client-urls="+etcdClient,
			"--listen-peer-urls="+etcdPeer,
			"--initial-advertise-peer-urls="+etcdPeer,
			"--initial-cluster=localkube="+etcdPeer,
			// A throwaway cluster: durability is not worth the fsync latency on
			// a shared disk.
			"--unsafe-no-fsync=true",
			"--log-level=warn",
		),
		d("kube-apiserver",
			"--etcd-servers="+etcdClient,
			"--bind-address="+l.BridgeIP.String(),
			"--advertise-address="+l.BridgeIP.String(),
			fmt.Sprintf("--secure-port=%d", l.APIServerPort),
			"--service-cluster-ip-range="+l.ServiceCIDR.String(),
			"--tls-cert-file="+l.pki("apiserver.crt"),
			"--tls-private-key-file="+l.pki("apiserver.key"),
			"--client-ca-file="+l.pki("ca.crt"),
			"--kubelet-client-certificate="+l.pki("apiserver-kubelet-client.crt"),
			"--kubelet-client-key="+l.pki("apiserver-kubelet-client.key"),
			"--kubelet-certificate-authority="+l.pki("ca.crt"),
			// Else exec/logs/port-forward resolve the node name, which no
			// DNS knows.
			"--kubelet-preferred-address-types=InternalIP,Hostname",
			"--authorization-mode=Node,RBAC",
			"--enable-admission-plugins=NodeRestriction",
			"--allow-privileged=true",
			"--service-account-issuer="+serviceAccountIss,
			"--service-account-key-file="+l.pki("sa.pub"),
			"--service-account-signing-key-file="+l.pki("sa.key"),
			"--api-audiences="+serviceAccountIss,
			"--profiling=false",
			"--v="+v,
		),
		d("kube-controller-manager",
			"--kubeconfig="+l.kubeconfigFor("controller-manager"),
			"--authentication-kubeconfig="+l.kubeconfigFor("controller-manager"),
			"--authorization-kubeconfig="+l.kubeconfigFor("controller-manager"),
			"--bind-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", l.ControllerManagerPort),
			"--leader-elect=false",
			// "*" is every default controller: node-lifecycle (clears the
			// not-ready taint), deployment, replicaset, daemonset,
			// endpointslice, serviceaccount, serviceaccount-token,
			// namespace, garbage-collector, root-ca-cert-publisher...
			"--controllers="+kcmControllers,
			"--use-service-account-credentials=true",
			"--service-account-private-key-file="+l.pki("sa.key"),
			"--root-ca-file="+l.pki("ca.crt"),
			"--cluster-signing-cert-file="+l.pki("ca.crt"),
			"--cluster-signing-key-file="+l.pki("ca.key"),
			"--cluster-name="+l.ClusterName,
			"--cluster-cidr="+l.PodCIDR.String(),
			"--service-cluster-ip-range="+l.ServiceCIDR.String(),
			// Pod CIDRs are fixed per node by Up (routes and CNI config
			// depend on them), not allocated.
			"--allocate-node-cidrs=false",
			// Its default, /usr/libexec/kubernetes/..., is created at start.
			"--flex-volume-plugin-dir="+filepath.Join(l.StateDir, "kcm-flexvolume"),
			"--profiling=false",
			"--v="+v,
		),
		d("kube-scheduler",
			"--kubeconfig="+l.kubeconfigFor("scheduler"),
			"--authentication-kubeconfig="+l.kubeconfigFor("scheduler"),
			"--authorization-kubeconfig="+l.kubeconfigFor("scheduler"),
			"--bind-address=127.0.0.1",
			fmt.Sprintf("--secure-port=%d", l.SchedulerPort),
			"--leader-elect=false",
			"--profiling=false",
			"--v="+v,
		),
	}
}

// startControlPlane starts etcd, waits for it, starts the apiserver, waits for
// /readyz, then starts the controller manager and the scheduler.
func startControlPlane(ctx context.Context, l layout) error {
	ds := l.controlPlane()
	if err := os.MkdirAll(l.EtcdDir, 0o700); err != nil {
		return err
	}
	if _, err := ds[0].start(); err != nil {
		return err
	}
	etcdHealth := fmt.Sprintf("http://127.0.0.1:%d/health", l.EtcdPort)
	if err := waitHTTP(ctx, http.DefaultClient, etcdHealth, `"health":"true"`, 30*time.Second, ds[0]); err != nil {
		return err
	}
	if _, err := ds[1].start(); err != nil {
		return err
	}
	hc, err := l.adminHTTPClient()
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, hc, l.APIServer+"/readyz", "ok", 90*time.Second, ds[1]); err != nil {
		return err
	}
	for _, d := range ds[2:] {
		if _, err := d.start(); err != nil {
			return err
		}
	}
	return nil
}

// adminHTTPClient is an HTTP client with the admin certificate, trusting the CA.
func (l layout) adminHTTPClient() (*http.Client, error) {
	caPEM, err := os.ReadFile(l.pki("ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(l.pki("admin.crt"), l.pki("admin.key"))
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}},
	}, nil
}

// waitHTTP polls url until it answers 200 with a body containing want. It
// gives up early when d's process died, quoting the end of its log.
func waitHTTP(ctx context.Context, hc *http.Client, url, want string, timeout time.Duration, d daemon) error {
	deadline := time.Now().Add(timeout)
	pid := readPID(d.PIDFile)
	var last string
	for {
		resp, err := hc.Get(url)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(b), want) {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		if !alive(pid) {
			return fmt.Errorf("%s exited: %s", d.Name, logTail(d.LogFile, 15))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not ready after %s: %s", d.Name, url, timeout, last)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// logTail returns the last n lines of a log file, for error messages.
func logTail(file string, n int) string {
	b, err := os.ReadFile(file)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return fmt.Sprintf("(%s) ...\n%s", file, strings.Join(lines, "\n"))
}
