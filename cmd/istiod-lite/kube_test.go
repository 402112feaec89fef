package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/internal/kubetest"
	caclient "github.com/warren-mesh/warren/istiod-lite/ca/client"
	"github.com/warren-mesh/warren/istiod-lite/xds/client"
)

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestKubeModeEndToEnd runs istiod-lite's Kubernetes wiring against a real
// API server: informers feed translation, route status is written, the
// waypoint is deployed, the root ConfigMap published, and a ztunnel with a
// pod-bound ServiceAccount token streams its config over TLS.
func TestKubeModeEndToEnd(t *testing.T) {
	env := kubetest.StartMesh(t)
	dir := t.TempDir()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["t"] = &clientcmdapi.Cluster{Server: env.Config.Host, CertificateAuthorityData: env.Config.CAData}
	kc.AuthInfos["t"] = &clientcmdapi.AuthInfo{ClientCertificateData: env.Config.CertData, ClientKeyData: env.Config.KeyData, Token: env.Config.BearerToken}
	kc.Contexts["t"] = &clientcmdapi.Context{Cluster: "t", AuthInfo: "t"}
	kc.CurrentContext = "t"
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cs, gw := env.Client, env.GatewayClient(t)
	ambient := map[string]string{"warren.io/dataplane-mode": "ambient", "warren.io/use-waypoint": "waypoint"}
	for _, ns := range []*corev1.Namespace{{ObjectMeta: metav1.ObjectMeta{Name: "warren-system"}}, {ObjectMeta: metav1.ObjectMeta{Name: "shop", Labels: ambient}}} {
		must(cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}))
	}
	must(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, metav1.CreateOptions{}))
	must(cs.CoreV1().ServiceAccounts("warren-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "ztunnel"}}, metav1.CreateOptions{}))
	zpod := must(cs.CoreV1().Pods("warren-system").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ztunnel-a"},
		Spec: corev1.PodSpec{ServiceAccountName: "ztunnel", NodeName: "node-a", Containers: []corev1.Container{{Name: "z", Image: "z"}}}}, metav1.CreateOptions{}))
	must(cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "echo"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{}))
	must(gw.GatewayV1().GatewayClasses().Create(ctx, &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "warren-waypoint"},
		Spec: gwv1.GatewayClassSpec{ControllerName: "warren.io/waypoint-controller"}}, metav1.CreateOptions{}))
	must(gw.GatewayV1().Gateways("shop").Create(ctx, &gwv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "waypoint"},
		Spec: gwv1.GatewaySpec{GatewayClassName: "warren-waypoint", Listeners: []gwv1.Listener{{Name: "mesh", Port: 15008, Protocol: "HBONE"}}}}, metav1.CreateOptions{}))
	group, kind := gwv1.Group(""), gwv1.Kind("Service")
	port := gwv1.PortNumber(80)
	must(gw.GatewayV1().HTTPRoutes("shop").Create(ctx, &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: gwv1.HTTPRouteSpec{
			CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Group: &group, Kind: &kind, Name: "echo"}}},
			Rules:           []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "echo", Port: &port}}}}}},
		}}, metav1.CreateOptions{}))

	o := options{
		trustDomain: "cluster.local", clusterDomain: "cluster.local", caDataDir: filepath.Join(dir, "ca"),
		caDefaultTTL: certs.DefaultSVIDTTL, caMaxTTL: certs.DefaultMaxTTL,
		grpcAddr: freeAddr(t), monitoringAddr: freeAddr(t), xdsDebounce: 20 * time.Millisecond,
		kubeconfig: kubeconfig, impersonators: "warren-system/ztunnel",
		systemNamespace: "warren-system", serviceAccount: "istiod-lite", rootCertOut: filepath.Join(dir, "root.pem"),
		waypointImage: "warren/waypoint:test",
	}
	logs := &syncBuf{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, o, slog.New(slog.NewTextHandler(logs, nil))) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()

	kubetest.Eventually(t, 60*time.Second, "route status from istiod-lite", func() bool {
		r, err := gw.GatewayV1().HTTPRoutes("shop").Get(ctx, "echo", metav1.GetOptions{})
		return err == nil && len(r.Status.Parents) == 1 && r.Status.Parents[0].ControllerName == "warren.io/mesh-controller"
	})
	kubetest.Eventually(t, 60*time.Second, "waypoint Deployment", func() bool {
		d, err := cs.AppsV1().Deployments("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		return err == nil && d.Spec.Template.Spec.Containers[0].Image == "warren/waypoint:test" &&
			d.Spec.Template.Labels["warren.io/dataplane-mode"] == "none"
	})
	kubetest.Eventually(t, 60*time.Second, "root ConfigMap in the enrolled namespace", func() bool {
		_, err := cs.CoreV1().ConfigMaps("shop").Get(ctx, "warren-ca-root-cert", metav1.GetOptions{})
		return err == nil
	})

	// A ztunnel with a pod-bound token streams its config over TLS.
	tr := must(cs.CoreV1().ServiceAccounts("warren-system").CreateToken(ctx, "ztunnel", &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		Audiences: []string{"warren-ca"}, BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: zpod.Name, UID: zpod.UID}}}, metav1.CreateOptions{}))
	kubetest.Eventually(t, 30*time.Second, "root-cert-out", func() bool { fi, err := os.Stat(o.rootCertOut); return err == nil && fi.Size() > 0 })
	roots := must(certs.ParseCertificates(must(os.ReadFile(o.rootCertOut))))
	bundle := certs.NewTrustBundle(spiffeid.RequireTrustDomainFromString("cluster.local"), roots...)
	serverID := spiffeid.RequireFromString("spiffe://cluster.local/ns/warren-system/sa/istiod-lite")
	rec := newRecorder()
	cl := must(client.New(client.Options{
		Address: o.grpcAddr, NodeID: "ztunnel~node-a", Types: []string{client.TypeService, client.TypeTrustBundle},
		TLS: caclient.TLSConfig(o.grpcAddr, bundle, serverID), Token: client.StaticToken(tr.Status.Token), Handler: rec,
	}))
	go cl.Run(ctx)
	kubetest.Eventually(t, 30*time.Second, "ztunnel to receive the echo Service", func() bool {
		return rec.get(client.TypeService, "shop/echo.shop.svc.cluster.local") != nil && rec.count(client.TypeTrustBundle) == 1
	})
	// Another node's identity is refused on the same stream's token.
	wrong := must(client.New(client.Options{
		Address: o.grpcAddr, NodeID: "ztunnel~node-b", Types: []string{client.TypeService},
		TLS: caclient.TLSConfig(o.grpcAddr, bundle, serverID), Token: client.StaticToken(tr.Status.Token), Handler: newRecorder(),
	}))
	go wrong.Run(ctx)
	kubetest.Eventually(t, 30*time.Second, "a refusal for the wrong node", func() bool {
		return strings.Contains(logs.String(), "node-b")
	})
}
