package cluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// certLifetime is the validity of every certificate the cluster issues; a
// local cluster lives for hours, a year leaves room for long-lived dev setups.
const certLifetime = 365 * 24 * time.Hour

// ca is the cluster's single certificate authority: it signs the apiserver's
// serving certificate, every client certificate (components, kubelets,
// admin) and the kubelets' serving certificates, and kube-controller-manager
// uses it to sign CSRs.
type ca struct {
	cert *x509.Certificate
	key  crypto.Signer
}

// certSpec describes one leaf certificate.
type certSpec struct {
	file   string // base name under the PKI dir: <file>.crt, <file>.key
	cn     string
	orgs   []string
	ips    []net.IP
	dns    []string
	server bool // ExtKeyUsageServerAuth (else ClientAuth)
}

func newCA(name string) (*ca, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &ca{cert: cert, key: key}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

// issue signs a leaf for spec and returns its PEM certificate and key.
func (c *ca) issue(s certSpec) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	usage := x509.ExtKeyUsageClientAuth
	if s.server {
		usage = x509.ExtKeyUsageServerAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: s.cn, Organization: s.orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(certLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  s.ips,
		DNSNames:     s.dns,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
	if err != nil {
		return nil, nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
}

func (c *ca) certPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.cert.Raw})
}

func (c *ca) keyPEM() ([]byte, error) {
	kb, err := x509.MarshalPKCS8PrivateKey(c.key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
}

// Identities of the cluster's clients. The component users are the ones
// Kubernetes' bootstrap RBAC policy binds (system:kube-controller-manager,
// system:kube-scheduler, system:kube-proxy via system:node-proxier); kubelets
// are system:node:<name> in system:nodes for the Node authorizer.
const (
	adminUser         = "warren-localkube-admin"
	apiserverKubelet  = "kube-apiserver-kubelet-client"
	kcmUser           = "system:kube-controller-manager"
	schedulerUser     = "system:kube-scheduler"
	kubeProxyUser     = "system:kube-proxy"
	mastersGroup      = "system:masters"
	nodesGroup        = "system:nodes"
	serviceAccountIss = "https://kubernetes.default.svc.cluster.local"
)

// writePKI creates the CA, every certificate, the service-account key pair
// and the kubeconfigs under l.PKIDir / l.StateDir.
func writePKI(l layout) error {
	if err := os.MkdirAll(l.PKIDir, 0o700); err != nil {
		return err
	}
	c, err := newCA(l.ClusterName + "-ca")
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	kp, err := c.keyPEM()
	if err != nil {
		return err
	}
	if err := writeFiles(l.PKIDir, map[string][]byte{"ca.crt": c.certPEM(), "ca.key": kp}); err != nil {
		return err
	}
	specs := []certSpec{
		{file: "apiserver", cn: "kube-apiserver", server: true,
			ips: []net.IP{l.BridgeIP.AsSlice(), l.ServiceIP.AsSlice(), net.IPv4(127, 0, 0, 1)},
			dns: []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"}},
		{file: "apiserver-kubelet-client", cn: apiserverKubelet, orgs: []string{mastersGroup}},
		{file: "admin", cn: adminUser, orgs: []string{mastersGroup}},
		{file: "controller-manager", cn: kcmUser},
		{file: "scheduler", cn: schedulerUser},
		{file: "kube-proxy", cn: kubeProxyUser},
	}
	for _, n := range l.Nodes {
		specs = append(specs,
			certSpec{file: n.Name + "-kubelet-client", cn: "system:node:" + n.Name, orgs: []string{nodesGroup}},
			certSpec{file: n.Name + "-kubelet-serving", cn: n.Name, server: true, ips: []net.IP{n.IP.AsSlice()}, dns: []string{n.Name}})
	}
	for _, s := range specs {
		crt, key, err := c.issue(s)
		if err != nil {
			return fmt.Errorf("certificate %s: %w", s.file, err)
		}
		if err := writeFiles(l.PKIDir, map[string][]byte{s.file + ".crt": crt, s.file + ".key": key}); err != nil {
			return err
		}
	}
	// Service-account token signing key (ES256).
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	sk, err := x509.MarshalPKCS8PrivateKey(sa)
	if err != nil {
		return err
	}
	pk, err := x509.MarshalPKIXPublicKey(sa.Public())
	if err != nil {
		return err
	}
	if err := writeFiles(l.PKIDir, map[string][]byte{
		"sa.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: sk}),
		"sa.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pk}),
	}); err != nil {
		return err
	}
	kcs := map[string]string{
		l.Kubeconfig:                          "admin",
		l.kubeconfigFor("controller-manager"): "controller-manager",
		l.kubeconfigFor("scheduler"):          "scheduler",
		l.kubeconfigFor("kube-proxy"):         "kube-proxy",
	}
	for _, n := range l.Nodes {
		kcs[l.kubeconfigFor(n.Name)] = n.Name + "-kubelet-client"
	}
	for path, cert := range kcs {
		if err := writeKubeconfig(l, path, cert); err != nil {
			return err
		}
	}
	return nil
}

func (l layout) kubeconfigFor(who string) string {
	return filepath.Join(l.PKIDir, who+".kubeconfig")
}

func (l layout) pki(file string) string { return filepath.Join(l.PKIDir, file) }

// writeKubeconfig writes a kubeconfig for the client certificate <cert>.crt
// pointing at the apiserver, with every credential embedded.
func writeKubeconfig(l layout, path, cert string) error {
	caPEM, err := os.ReadFile(l.pki("ca.crt"))
	if err != nil {
		return err
	}
	crt, err := os.ReadFile(l.pki(cert + ".crt"))
	if err != nil {
		return err
	}
	key, err := os.ReadFile(l.pki(cert + ".key"))
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[l.ClusterName] = &clientcmdapi.Cluster{Server: l.APIServer, CertificateAuthorityData: caPEM}
	cfg.AuthInfos[cert] = &clientcmdapi.AuthInfo{ClientCertificateData: crt, ClientKeyData: key}
	cfg.Contexts[l.ClusterName] = &clientcmdapi.Context{Cluster: l.ClusterName, AuthInfo: cert, Namespace: "default"}
	cfg.CurrentContext = l.ClusterName
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("kubeconfig %s: %w", path, err)
	}
	return os.Chmod(path, 0o600)
}

func writeFiles(dir string, files map[string][]byte) error {
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}
