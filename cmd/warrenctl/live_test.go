package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	gwv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/warren-mesh/warren/internal/kubetest"
)

// needer returns a function failing t on a non-nil error, for calls
// whose result is not needed.
func needer(t *testing.T) func(any, error) {
	return func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestLiveCluster drives waypoint apply/list/status/delete, analyze,
// describe and trace against a real kube-apiserver (envtest with the
// Gateway API and Warren CRDs), and reaches istiod-lite's debug port
// through the API server's service proxy.
func TestLiveCluster(t *testing.T) {
	kenv := kubetest.StartMesh(t)
	kc := clientcmdapi.NewConfig()
	kc.Clusters["t"] = &clientcmdapi.Cluster{Server: kenv.Config.Host, CertificateAuthorityData: kenv.Config.CAData}
	kc.AuthInfos["t"] = &clientcmdapi.AuthInfo{ClientCertificateData: kenv.Config.CertData, ClientKeyData: kenv.Config.KeyData, Token: kenv.Config.BearerToken}
	kc.Contexts["t"] = &clientcmdapi.Context{Cluster: "t", AuthInfo: "t", Namespace: "shop"}
	kc.CurrentContext = "t"
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	noKubeconfig(t)
	ctx := context.Background()
	cs, gw := kenv.Client, kenv.GatewayClient(t)
	need := needer(t)
	warren := func(args ...string) (string, string, int) {
		t.Helper()
		return cli(t, nil, append(args, "--kubeconfig", kubeconfig)...)
	}

	for _, ns := range []string{"warren-system", "shop", "client"} {
		labels := map[string]string{"warren.io/dataplane-mode": "ambient"}
		if ns == "warren-system" {
			labels = nil
		}
		need(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: labels}}, metav1.CreateOptions{}))
	}
	need(cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}, metav1.CreateOptions{}))
	need(gw.GatewayV1().GatewayClasses().Create(ctx, &gwv1.GatewayClass{ObjectMeta: metav1.ObjectMeta{Name: "warren-waypoint"},
		Spec: gwv1.GatewayClassSpec{ControllerName: "warren.io/waypoint-controller"}}, metav1.CreateOptions{}))
	need(cs.CoreV1().Services("shop").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "echo"}, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}, metav1.CreateOptions{}))
	runningPod := func(ns, name, ip string, labels map[string]string) {
		p, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Spec: corev1.PodSpec{NodeName: "node-a", ServiceAccountName: "default", Containers: []corev1.Container{{Name: "c", Image: "i"}}}}, metav1.CreateOptions{})
		need(p, err)
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		need(cs.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{}))
	}
	runningPod("shop", "echo-0", "10.244.1.20", map[string]string{"app": "echo"})
	runningPod("client", "curl-0", "10.244.1.10", nil)
	group, kind := gwv1.Group(""), gwv1.Kind("Service")
	port := gwv1.PortNumber(80)
	need(gw.GatewayV1().HTTPRoutes("shop").Create(ctx, &gwv1.HTTPRoute{ObjectMeta: metav1.ObjectMeta{Name: "echo"},
		Spec: gwv1.HTTPRouteSpec{CommonRouteSpec: gwv1.CommonRouteSpec{ParentRefs: []gwv1.ParentReference{{Group: &group, Kind: &kind, Name: "echo"}}},
			Rules: []gwv1.HTTPRouteRule{{BackendRefs: []gwv1.HTTPBackendRef{{BackendRef: gwv1.BackendRef{BackendObjectReference: gwv1.BackendObjectReference{Name: "echo", Port: &port}}}}}}}},
		metav1.CreateOptions{}))

	codes := func(out string) map[string]bool {
		t.Helper()
		var fs []finding
		if err := json.Unmarshal([]byte(out), &fs); err != nil {
			t.Fatalf("analyze JSON: %v\n%s", err, out)
		}
		m := map[string]bool{}
		for _, f := range fs {
			m[f.Code] = true
		}
		return m
	}

	t.Run("analyze before a waypoint", func(t *testing.T) {
		out, errOut, code := warren("analyze", "-o", "json")
		if code != exitFindings {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		c := codes(out)
		if !c[codeRouteNoWaypoint] || !c[codeNoZtunnel] {
			t.Errorf("codes %v, want %s and %s", c, codeRouteNoWaypoint, codeNoZtunnel)
		}
		if !strings.Contains(errOut, "XBackendTrafficPolicy CRD not installed") && !strings.Contains(errOut, "ConfigMap warren-system/warren-ca-root-cert not found") {
			t.Errorf("notes missing on stderr: %q", errOut)
		}
	})

	t.Run("waypoint apply", func(t *testing.T) {
		out, errOut, code := warren("waypoint", "apply", "--enroll-namespace")
		if code != 0 || out != "waypoint shop/waypoint created\nnamespace shop labelled warren.io/use-waypoint=waypoint\n" {
			t.Fatalf("exit %d out %q err %q", code, out, errOut)
		}
		g, err := gw.GatewayV1().Gateways("shop").Get(ctx, "waypoint", metav1.GetOptions{})
		need(g, err)
		if g.Spec.GatewayClassName != "warren-waypoint" || g.Labels["warren.io/waypoint-for"] != "service" || g.Spec.Listeners[0].Port != 15008 {
			t.Errorf("gateway %+v", g)
		}
		ns, err := cs.CoreV1().Namespaces().Get(ctx, "shop", metav1.GetOptions{})
		need(ns, err)
		if ns.Labels["warren.io/use-waypoint"] != "waypoint" || ns.Labels["warren.io/dataplane-mode"] != "ambient" {
			t.Errorf("namespace labels %v", ns.Labels)
		}
		if out, _, code := warren("waypoint", "apply"); code != 0 || out != "waypoint shop/waypoint unchanged\n" {
			t.Errorf("second apply: %d %q", code, out)
		}
		if _, errOut, code := warren("waypoint", "apply", "--for", "all"); code != 1 ||
			errOut != "warrenctl: waypoint shop/waypoint exists with warren.io/waypoint-for=service: pass --overwrite to change it to all\n" {
			t.Errorf("apply without --overwrite: %d %q", code, errOut)
		}
		if out, _, code := warren("waypoint", "apply", "--for", "all", "--overwrite"); code != 0 || out != "waypoint shop/waypoint configured\n" {
			t.Errorf("apply --overwrite: %d %q", code, out)
		}
		if g, err := gw.GatewayV1().Gateways("shop").Get(ctx, "waypoint", metav1.GetOptions{}); err != nil || g.Labels["warren.io/waypoint-for"] != "all" {
			t.Errorf("waypoint-for not changed to all (err %v)", err)
		}
	})

	t.Run("waypoint apply --wait", func(t *testing.T) {
		// The CRD defaults the condition until a controller answers.
		if _, errOut, code := warren("waypoint", "apply", "slow", "--wait", "--timeout", "1s"); code != 1 ||
			errOut != "warrenctl: waypoint shop/slow not ready after 1s: Programmed=Unknown (Pending: Waiting for controller)\n" {
			t.Errorf("timeout: %d %q", code, errOut)
		}
		go func() {
			time.Sleep(300 * time.Millisecond)
			g, err := gw.GatewayV1().Gateways("shop").Get(ctx, "slow", metav1.GetOptions{})
			if err != nil {
				return
			}
			g.Status.Conditions = []metav1.Condition{{Type: "Programmed", Status: metav1.ConditionTrue, Reason: "Programmed", LastTransitionTime: metav1.Now(), ObservedGeneration: g.Generation}}
			_, _ = gw.GatewayV1().Gateways("shop").UpdateStatus(ctx, g, metav1.UpdateOptions{})
		}()
		if out, errOut, code := warren("waypoint", "apply", "slow", "--wait", "--timeout", "30s"); code != 0 || !strings.HasSuffix(out, "waypoint shop/slow is ready\n") {
			t.Errorf("wait: %d %q %q", code, out, errOut)
		}
	})

	t.Run("waypoint list and status", func(t *testing.T) {
		out, errOut, code := warren("waypoint", "list", "-o", "json")
		if code != 0 {
			t.Fatalf("%d %s", code, errOut)
		}
		var ws []waypointInfo
		need(0, json.Unmarshal([]byte(out), &ws))
		if len(ws) != 2 || ws[1].Name != "waypoint" || ws[1].For != "all" || len(ws[1].UsedBy) == 0 || ws[1].UsedBy[0].Name != "shop/echo" {
			t.Errorf("list = %+v", ws)
		}
		if ws[0].Name != "slow" || ws[0].Programmed.Status != "False" {
			t.Errorf("slow = %+v (Programmed follows the Deployment, which istiod-lite has not created)", ws[0])
		}
		out, _, code = warren("waypoint", "status", "waypoint")
		for _, want := range []string{"Waypoint:      shop/waypoint (serves all traffic)", "Service  shop/echo", "namespace shop label warren.io/use-waypoint=waypoint", "Pod      shop/echo-0"} {
			if code != 0 || !strings.Contains(out, want) {
				t.Errorf("status lacks %q:\n%s", want, out)
			}
		}
		if _, errOut, code := warren("waypoint", "status", "nope"); code != 1 || errOut != "warrenctl: waypoint shop/nope not found (no Gateway of class warren-waypoint)\n" {
			t.Errorf("status nope: %d %q", code, errOut)
		}
	})

	t.Run("analyze, describe and trace with the waypoint", func(t *testing.T) {
		out, _, _ := warren("analyze", "-A", "-o", "json")
		c := codes(out)
		if c[codeRouteNoWaypoint] || !c[codeWaypointNotReady] {
			t.Errorf("codes %v: the route is bound now; the waypoint has no Deployment", c)
		}
		out, errOut, code := warren("x", "describe", "service", "echo")
		if code != 0 || !strings.Contains(out, "Waypoint:  shop/waypoint at -, chosen by namespace shop label warren.io/use-waypoint=waypoint; NOT READY") {
			t.Errorf("describe: %d %s %s", code, out, errOut)
		}
		out, errOut, code = warren("x", "trace", "--local", "--from", "client/curl-0", "http://echo.shop/")
		if code != 0 || !strings.Contains(out, "waypoint shop/waypoint is bound but has no address yet") || !strings.Contains(out, "Config:  local translation of the objects in cluster https://") {
			t.Errorf("trace: %d\n%s\n%s", code, out, errOut)
		}
		// Without --local it asks istiod-lite first, and says so when it
		// falls back to translating the objects itself.
		out, _, code = warren("x", "trace", "--from", "client/curl-0", "http://echo.shop/")
		if code != 0 || !strings.Contains(out, "istiod-lite could not be read (service warren-system/istiod-lite not found") {
			t.Errorf("trace fallback: %d\n%s", code, out)
		}
		_, errOut, code = warren("x", "trace", "--local", "--from", "client/nope", "http://echo.shop/")
		if code != 1 || errOut != "warrenctl: pod client/nope not found\n" {
			t.Errorf("unknown pod: %d %q", code, errOut)
		}
	})

	t.Run("waypoint delete", func(t *testing.T) {
		out, errOut, code := warren("waypoint", "delete", "waypoint")
		if code != 0 || out != "waypoint shop/waypoint deleted\n" || !strings.Contains(errOut, "namespace shop still has warren.io/use-waypoint=waypoint") {
			t.Errorf("delete: %d %q %q", code, out, errOut)
		}
		if _, err := gw.GatewayV1().Gateways("shop").Get(ctx, "waypoint", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("gateway still there: %v", err)
		}
		if _, errOut, code := warren("waypoint", "delete", "waypoint"); code != 1 || errOut != "warrenctl: waypoint shop/waypoint not found\n" {
			t.Errorf("second delete: %d %q", code, errOut)
		}
		if out, _, code := warren("waypoint", "delete", "--all"); code != 0 || out != "waypoint shop/slow deleted\n" {
			t.Errorf("delete --all: %d %q", code, out)
		}
		out, _, _ = warren("analyze", "-o", "json")
		if !codes(out)[codeWaypointMissing] {
			t.Errorf("the namespace label names a deleted waypoint: want %s", codeWaypointMissing)
		}
	})

	t.Run("istiod-lite through the API server's service proxy", func(t *testing.T) {
		_, errOut, code := warren("proxy-status")
		if code != 1 || errOut != "warrenctl: service warren-system/istiod-lite not found: is Warren installed in this cluster? (--istiod-namespace, --istiod-service, or --istiod-addr HOST:PORT)\n" {
			t.Errorf("no service: %d %q", code, errOut)
		}
		need(cs.CoreV1().Services("warren-system").Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "istiod-lite"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "istiod-lite"}, Ports: []corev1.ServicePort{{Name: "http-monitoring", Port: 15014}}}}, metav1.CreateOptions{}))
		_, errOut, code = warren("proxy-status")
		if code != 1 || !strings.Contains(errOut, "has no ready endpoints: is istiod-lite running?") {
			t.Errorf("no endpoints: %d %q", code, errOut)
		}
		// The service proxy dials an Endpoints address only when its
		// targetRef is a Pod holding that IP (not loopback): make
		// istiod-lite's pod at this machine's address.
		need := needer(t)
		ip := hostIP()
		if ip == "" {
			t.Skip("needs a non-loopback IPv4 address: Endpoints refuse loopback addresses")
		}
		lis, err := net.Listen("tcp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		pod, err := cs.CoreV1().Pods("warren-system").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "istiod-lite-0", Labels: map[string]string{"app": "istiod-lite"}},
			Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "istiod-lite", Image: "warren.local/istiod-lite:v0.3.0"}}}}, metav1.CreateOptions{})
		need(pod, err)
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}}
		need(cs.CoreV1().Pods("warren-system").UpdateStatus(ctx, pod, metav1.UpdateOptions{}))
		srv := &http.Server{Handler: fakeServer(t, map[string]string{"/debug/syncz": "syncz.json",
			"/debug/status": `{"connected": 3, "byKind": {"waypoint": 1, "ztunnel": 2}}`}).Config.Handler}
		go func() { _ = srv.Serve(lis) }()
		t.Cleanup(func() { srv.Close() })
		// kube-apiserver 1.36's service proxy resolves core/v1 Endpoints
		// (pkg/registry/core/service/storage ResourceLocation), so the
		// deprecated type is the one to write here.
		//lint:ignore SA1019 the service proxy reads Endpoints, not EndpointSlices
		eps := &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: "istiod-lite"}, Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: ip, TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "warren-system", Name: pod.Name}}},
			Ports:     []corev1.EndpointPort{{Name: "http-monitoring", Port: int32(lis.Addr().(*net.TCPAddr).Port)}}}}}
		need(cs.CoreV1().Endpoints("warren-system").Create(ctx, eps, metav1.CreateOptions{}))
		var out string
		kubetest.Eventually(t, 30*time.Second, "proxy-status through the service proxy", func() bool {
			out, errOut, code = warren("proxy-status")
			return code == 0
		})
		// Through the API server it reads exactly what --istiod-addr reads.
		golden(t, "proxy-status.txt", out)
		out, errOut, code = warren("version")
		if code != 0 || !strings.Contains(out, "istiod-lite  v0.3.0          warren.local/istiod-lite:v0.3.0  0/1") || !strings.Contains(out, "Connected to istiod-lite: 1 waypoint, 2 ztunnel") {
			t.Errorf("version: %d %q\n%s", code, errOut, out)
		}
	})
}

// hostIP returns a non-loopback IPv4 address of this machine, or "".
func hostIP() string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return ""
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	return ""
}
