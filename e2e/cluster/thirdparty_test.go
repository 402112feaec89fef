package cluster

import (
	"archive/tar"
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// imageContents reads ref out of the tarball at p and returns its config and
// the files of its (flattened) filesystem with their tar headers.
func imageContents(t *testing.T, p, ref string) (entrypoint []string, user string, files map[string]*tar.Header, data map[string][]byte) {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	im, err := tarball.ImageFromPath(p, &tag)
	if err != nil {
		t.Fatalf("%s in %s: %v", ref, p, err)
	}
	cf, err := im.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	files, data = map[string]*tar.Header{}, map[string][]byte{}
	rc := mutate.Extract(im)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		files["/"+strings.TrimSuffix(h.Name, "/")] = h
		b, _ := io.ReadAll(tr)
		data["/"+strings.TrimSuffix(h.Name, "/")] = b
	}
	return cf.Config.Entrypoint, cf.Config.User, files, data
}

func fakeBins(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("#!/bin/true\n"+n), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestEchoAdvancedImage(t *testing.T) {
	if _, err := os.Stat(busyboxPath); err != nil {
		t.Skip("busybox-static not installed (hack/deps.sh cluster)")
	}
	img, err := EchoAdvancedImageSpec(fakeBins(t, "istio-echo-server", "istio-echo-client"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "adv.tar")
	if err := BuildImage(img, out); err != nil {
		t.Fatal(err)
	}
	entry, user, files, data := imageContents(t, out, EchoAdvancedImage)
	// What the mesh manifests and the suite rely on: the server as
	// entrypoint (the Deployment gives only args), `client` on PATH, the
	// certificate pair named by --crt/--key.
	if strings.Join(entry, " ") != "/usr/local/bin/server" || user != "1338" {
		t.Fatalf("entrypoint %v user %q", entry, user)
	}
	for _, f := range []string{"/usr/local/bin/server", "/usr/local/bin/client", "/bin/sh", "/tmp"} {
		if files[f] == nil {
			t.Errorf("image lacks %s", f)
		}
	}
	if files["/usr/local/bin/client"].Mode&0o111 == 0 || files["/tmp"].Mode != 0o1777 {
		t.Errorf("modes: client %o tmp %o", files["/usr/local/bin/client"].Mode, files["/tmp"].Mode)
	}
	pair, err := tls.X509KeyPair(data["/cert.crt"], data["/cert.key"])
	if err != nil {
		t.Fatalf("/cert.crt + /cert.key: %v", err)
	}
	if pair.Leaf == nil || pair.Leaf.VerifyHostname("echo-v1.gateway-conformance-mesh.svc.cluster.local") != nil {
		t.Fatalf("certificate names %v", pair.Leaf.DNSNames)
	}
	if files["/cert.key"].Mode&0o004 == 0 {
		t.Error("/cert.key must be readable by the image's user 1338")
	}
}

func TestMultiRefImages(t *testing.T) {
	dir := t.TempDir()
	for _, img := range []Image{CoreDNSImageSpec(fakeBins(t, "coredns")), EchoBasicImageSpec(fakeBins(t, "echo-basic"))} {
		out := filepath.Join(dir, imageFile(img.Ref))
		if err := BuildImage(img, out); err != nil {
			t.Fatal(err)
		}
		for _, ref := range append([]string{img.Ref}, img.ExtraRefs...) {
			entry, _, files, _ := imageContents(t, out, ref)
			if len(entry) != 1 || files[entry[0]] == nil {
				t.Fatalf("%s: entrypoint %v not in the image", ref, entry)
			}
		}
	}
	got := strings.Join(ConformanceImages(), " ")
	for _, want := range []string{"registry.k8s.io/gateway-api/echo-advanced:v1.5.1", "registry.k8s.io/gateway-api/echo-basic:v1.5.1",
		"registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.2", "registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3", "registry.k8s.io/coredns/coredns:v1.12.2"} {
		if !strings.Contains(got, want) {
			t.Errorf("conformance images lack %s", want)
		}
	}
}

func TestDNSConfig(t *testing.T) {
	l := testLayout(t, Options{})
	if l.DNSIP.String() != "10.96.0.10" {
		t.Fatalf("dns ip %s", l.DNSIP)
	}
	if kc := l.kubeletConfig(l.Nodes[0]); !strings.Contains(kc, `clusterDNS: ["10.96.0.10"]`) || !strings.Contains(kc, "clusterDomain: cluster.local") {
		t.Fatalf("kubelet config:\n%s", kc)
	}
	iso := testLayout(t, IsolatedOptions("wkt", 4))
	if iso.DNSIP.String() != "10.100.0.10" {
		t.Fatalf("isolated dns ip %s", iso.DNSIP)
	}
	off := testLayout(t, Options{SkipDNS: true})
	if kc := off.kubeletConfig(off.Nodes[0]); strings.Contains(kc, "clusterDNS") {
		t.Fatalf("SkipDNS: kubelet config names a cluster DNS:\n%s", kc)
	}
	if got := thirdPartyComponents(off.Options); len(got) != 0 {
		t.Fatalf("SkipDNS builds %v", got)
	}
	if got := strings.Join(thirdPartyComponents(Options{}), ","); got != "coredns" {
		t.Fatalf("default builds %v", got)
	}
	_, _, _, cm, dep, svc := dnsObjects(l.DNSIP)
	if svc.Spec.ClusterIP != "10.96.0.10" || svc.Name != "kube-dns" || svc.Namespace != "kube-system" {
		t.Fatalf("service %s/%s %s", svc.Namespace, svc.Name, svc.Spec.ClusterIP)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != CoreDNSImage || dep.Spec.Template.Spec.DNSPolicy != "Default" {
		t.Fatalf("deployment image %s dnsPolicy %s", c.Image, dep.Spec.Template.Spec.DNSPolicy)
	}
	for _, want := range []string{"kubernetes cluster.local in-addr.arpa ip6.arpa", "forward . /etc/resolv.conf", "ready", "health"} {
		if !strings.Contains(cm.Data["Corefile"], want) {
			t.Errorf("Corefile lacks %q", want)
		}
	}
}
