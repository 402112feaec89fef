package cluster

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Third-party images, built from source like everything else here: the
// programs come from the Go module proxy through hack/image-bins.sh (one
// throwaway module per program under .cache/images, never the project's
// go.mod) and are packaged with BuildImage under the exact names the upstream
// manifests use, so that pods with imagePullPolicy IfNotPresent start without
// a registry.

// Versions of the third-party programs (hack/image-bins.sh's defaults).
const (
	CoreDNSVersion    = "v1.12.2"
	IstioEchoVersion  = "v0.0.0-20260827124520-eed52ebb66ad"
	GatewayAPIVersion = "v1.6.3"
)

// Image names.
const (
	// CoreDNSImage is the cluster DNS image (Options.SkipDNS off). The same
	// tarball also names it CoreDNSUpstreamImage.
	CoreDNSImage = "warren.local/coredns:" + CoreDNSVersion
	// CoreDNSUpstreamImage is what the Gateway API conformance base
	// manifests (v1.6.3) run for their UDP/DNS tests.
	CoreDNSUpstreamImage = "registry.k8s.io/coredns/coredns:v1.12.2"
	// EchoAdvancedImage is Istio's echo server and client in one image, as
	// the Gateway API mesh conformance manifests (v1.6.3) run it: entrypoint
	// /usr/local/bin/server, /usr/local/bin/client on PATH (the suite execs
	// `client <url>` in the pods), /cert.crt and /cert.key, user 1338.
	EchoAdvancedImage = "registry.k8s.io/gateway-api/echo-advanced:v1.5.1"
	// EchoBasicImage is the conformance module's echo-basic (entrypoint
	// /echo-basic, user 65532), which the Gateway profiles' manifests run.
	// EchoBasicExtraImages are the other tags of it those manifests name.
	EchoBasicImage = "registry.k8s.io/gateway-api/echo-basic:v1.5.1"
)

// EchoBasicExtraImages are further tags the conformance v1.6.3 manifests use
// for echo-basic; the image built from the v1.6.3 source carries them all.
var EchoBasicExtraImages = []string{
	"registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.2",
	"registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3",
}

// ConformanceImages are the names LoadConformanceImages (and
// Options.ConformanceImages) put into every node.
func ConformanceImages() []string {
	return append([]string{EchoAdvancedImage, EchoBasicImage, CoreDNSUpstreamImage}, EchoBasicExtraImages...)
}

// ThirdPartyBins runs hack/image-bins.sh for the components (coredns,
// istio-echo, echo-basic) — building what is not cached — and returns each
// component's bin directory.
func ThirdPartyBins(ctx context.Context, repoDir string, components ...string) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(repoDir, "hack", "image-bins.sh"), components...)
	cmd.Dir = repoDir
	cmd.Env = append(os.Environ(), "GOTOOLCHAIN=local")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("cluster: hack/image-bins.sh %s: %w: %s", strings.Join(components, " "), err, strings.TrimSpace(stderr.String()))
	}
	dirs := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		if c, dir, ok := strings.Cut(sc.Text(), " "); ok {
			dirs[c] = dir
		}
	}
	for _, c := range components {
		if dirs[c] == "" {
			return nil, fmt.Errorf("cluster: hack/image-bins.sh %s: no bin dir for %s in %q", strings.Join(components, " "), c, out)
		}
	}
	return dirs, nil
}

// thirdPartyBinDir is where hack/image-bins.sh puts a component's binaries
// (for checks without running the script): $WARREN_CACHE, default
// <repo>/.cache, then images/<component>-<version>/bin.
func thirdPartyBinDir(repoDir, component, version string) string {
	cache := os.Getenv("WARREN_CACHE")
	if cache == "" {
		cache = filepath.Join(repoDir, ".cache")
	}
	return filepath.Join(cache, "images", component+"-"+version, "bin")
}

// CoreDNSImageSpec returns the CoreDNS image made of the binary in binDir.
func CoreDNSImageSpec(binDir string) Image {
	return Image{
		Ref:        CoreDNSImage,
		ExtraRefs:  []string{CoreDNSUpstreamImage},
		Files:      map[string]File{"/coredns": {HostPath: filepath.Join(binDir, "coredns"), Mode: 0o755}},
		Entrypoint: []string{"/coredns"},
		Env:        []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
	}
}

// EchoAdvancedImageSpec returns the echo-advanced image made of Istio's echo
// server and client in binDir, a fresh self-signed certificate for
// /cert.crt and /cert.key (what the manifests' --crt/--key name), and busybox
// for `kubectl exec ... sh`. It mirrors Istio's Dockerfile.app.
func EchoAdvancedImageSpec(binDir string) (Image, error) {
	crt, key, err := selfSignedPair("echo", []string{
		"echo", "echo-v1", "echo-v2", "localhost",
		"*.gateway-conformance-mesh", "*.gateway-conformance-mesh.svc", "*.gateway-conformance-mesh.svc.cluster.local",
		"*.gateway-conformance-mesh-consumer", "*.gateway-conformance-mesh-consumer.svc", "*.gateway-conformance-mesh-consumer.svc.cluster.local",
	})
	if err != nil {
		return Image{}, fmt.Errorf("cluster: image %s: certificate: %w", EchoAdvancedImage, err)
	}
	files := map[string]File{
		"/usr/local/bin/server": {HostPath: filepath.Join(binDir, "istio-echo-server"), Mode: 0o755},
		"/usr/local/bin/client": {HostPath: filepath.Join(binDir, "istio-echo-client"), Mode: 0o755},
		"/cert.crt":             {Data: crt, Mode: 0o644},
		"/cert.key":             {Data: key, Mode: 0o644}, // read by user 1338
		"/tmp":                  {Dir: true, Mode: 0o777 | fs.ModeSticky},
	}
	if err := addBusybox(files); err != nil {
		return Image{}, fmt.Errorf("cluster: image %s: %w", EchoAdvancedImage, err)
	}
	return Image{
		Ref:        EchoAdvancedImage,
		Files:      files,
		Entrypoint: []string{"/usr/local/bin/server"},
		User:       "1338",
	}, nil
}

// EchoBasicImageSpec returns the echo-basic image made of the binary in
// binDir, as the upstream Dockerfile.echo-basic packages it.
func EchoBasicImageSpec(binDir string) Image {
	return Image{
		Ref:        EchoBasicImage,
		ExtraRefs:  EchoBasicExtraImages,
		Files:      map[string]File{"/echo-basic": {HostPath: filepath.Join(binDir, "echo-basic"), Mode: 0o755}},
		Entrypoint: []string{"/echo-basic"},
		User:       "65532:65532",
	}
}

// selfSignedPair makes a self-signed ECDSA P-256 server certificate (also a
// CA, so clients may pin it) and returns the PEM certificate and PKCS#8 key.
func selfSignedPair(cn string, dnsNames []string) (crtPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"warren local cluster"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              dnsNames,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
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

// buildConformanceImages builds the conformance image tarballs into dir and
// returns their paths.
func buildConformanceImages(ctx context.Context, repoDir, dir string) ([]string, error) {
	bins, err := ThirdPartyBins(ctx, repoDir, "coredns", "istio-echo", "echo-basic")
	if err != nil {
		return nil, err
	}
	adv, err := EchoAdvancedImageSpec(bins["istio-echo"])
	if err != nil {
		return nil, err
	}
	var out []string
	for _, img := range []Image{adv, EchoBasicImageSpec(bins["echo-basic"]), CoreDNSImageSpec(bins["coredns"])} {
		p := filepath.Join(dir, imageFile(img.Ref))
		if err := BuildImage(img, p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// LoadConformanceImages builds (hack/image-bins.sh caches the programs) and
// imports into every node the images the Gateway API conformance suite
// v1.6.3 runs, under its names (ConformanceImages). It is idempotent.
func (c *Cluster) LoadConformanceImages(ctx context.Context) error {
	if c.l.RepoDir == "" {
		return fmt.Errorf("cluster: conformance images: no repository dir")
	}
	tars, err := buildConformanceImages(ctx, c.l.RepoDir, c.l.ImageDir)
	if err != nil {
		return err
	}
	return c.LoadImage(ctx, tars...)
}
