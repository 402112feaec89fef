package ca_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/warren-mesh/warren/certs"
	"github.com/warren-mesh/warren/internal/kubetest"
	"github.com/warren-mesh/warren/istiod-lite/ca"
)

// must returns v or fails the test by panicking on err (setup steps only).
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

type cluster struct {
	t   *testing.T
	ctx context.Context
	cs  kubernetes.Interface
}

func (c *cluster) ns(name string, labels map[string]string) {
	must(c.cs.CoreV1().Namespaces().Create(c.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}))
}

func (c *cluster) sa(ns, name string) {
	must(c.cs.CoreV1().ServiceAccounts(ns).Create(c.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}, metav1.CreateOptions{}))
}

func (c *cluster) node(name string) {
	must(c.cs.CoreV1().Nodes().Create(c.ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}))
}

func (c *cluster) pod(ns, name, sa, node string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa, NodeName: node,
			Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app:1"}},
		},
	}
	return must(c.cs.CoreV1().Pods(ns).Create(c.ctx, p, metav1.CreateOptions{}))
}

// token requests a ServiceAccount token for audiences, bound to pod if set
// (which makes the API server record the pod's node in it).
func (c *cluster) token(ns, sa string, pod *corev1.Pod, audiences ...string) string {
	req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: audiences}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr := must(c.cs.CoreV1().ServiceAccounts(ns).CreateToken(c.ctx, sa, req, metav1.CreateOptions{}))
	return tr.Status.Token
}

// TestTokenReviewAndNodeScopedImpersonationAgainstAPIServer runs the CA
// against a real kube-apiserver: real ServiceAccount tokens, TokenReview
// with the warren-ca audience, the node taken from pod-bound tokens, pods
// located through an informer.
func TestTokenReviewAndNodeScopedImpersonationAgainstAPIServer(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &cluster{t: t, ctx: ctx, cs: env.Client}
	c.ns("warren-system", nil)
	c.ns("shop", map[string]string{ca.EnrolLabel: ca.EnrolValue})
	for _, n := range []string{"node-a", "node-b"} {
		c.node(n)
	}
	c.sa("warren-system", "ztunnel")
	for _, sa := range []string{"web", "db"} {
		c.sa("shop", sa)
	}
	ztA := c.pod("warren-system", "ztunnel-a", "ztunnel", "node-a")
	web := c.pod("shop", "web-1", "web", "node-a")
	c.pod("shop", "db-1", "db", "node-b")

	authority := must(certs.NewCA(certs.Options{TrustDomain: td, DataDir: t.TempDir()}))
	factory := informers.NewSharedInformerFactory(env.Client, 0)
	pods := must(ca.NewKubePodLocator(factory))
	factory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), pods.HasSynced) {
		t.Fatal("pod cache did not sync")
	}
	srv := must(ca.NewServer(ca.Options{
		CA:            authority,
		Authenticator: &ca.TokenReviewAuthenticator{Client: env.Client, TrustDomain: td},
		Pods:          pods,
		Impersonators: []string{"warren-system/ztunnel"},
	}))
	serverID := must(certs.WorkloadID(td, "warren-system", "istiod-lite"))
	f := serveOnLoopback(t, ctx, authority, srv, serverID)

	ztToken := c.token("warren-system", "ztunnel", ztA, ca.Audience)
	cases := []struct {
		name  string
		token string
		want  spiffeid.ID
		code  codes.Code
		match string
	}{
		{"ztunnel gets a pod on its node", ztToken, id(t, "shop", "web"), codes.OK, ""},
		{"ztunnel refused a pod on another node", ztToken, id(t, "shop", "db"), codes.PermissionDenied, `run on node-b, not on the caller's node "node-a"`},
		{"ztunnel refused an unknown identity", ztToken, id(t, "shop", "nobody"), codes.PermissionDenied, "no running pod"},
		{"token without the warren-ca audience", c.token("warren-system", "ztunnel", ztA, "other-audience"), id(t, "shop", "web"), codes.Unauthenticated, "token review"},
		{"token not bound to a pod has no node", c.token("warren-system", "ztunnel", nil, ca.Audience), id(t, "shop", "web"), codes.PermissionDenied, "not bound to a node"},
		{"workload gets its own identity", c.token("shop", "web", web, ca.Audience), spiffeid.ID{}, codes.OK, ""},
		{"workload refused another identity", c.token("shop", "web", web, ca.Audience), id(t, "shop", "db"), codes.PermissionDenied, "may only request its own identity"},
		{"garbage token", "not-a-jwt", id(t, "shop", "web"), codes.Unauthenticated, "token review"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := f.client(t, tc.token)
			res, err := cl.Sign(ctx, tc.want, time.Hour)
			if tc.code == codes.OK {
				if err != nil {
					t.Fatal(err)
				}
				want := tc.want
				if want.IsZero() {
					want = id(t, "shop", "web")
				}
				if res.SVID.ID != want {
					t.Fatalf("issued %s, want %s", res.SVID.ID, want)
				}
				return
			}
			if err == nil {
				t.Fatalf("issued %s; want %v", res.SVID.ID, tc.code)
			}
			st, _ := status.FromError(unwrapStatus(err))
			if st.Code() != tc.code || !strings.Contains(st.Message(), tc.match) {
				t.Fatalf("got %v %q, want %v containing %q", st.Code(), st.Message(), tc.code, tc.match)
			}
		})
	}

	// The pod moves away (deleted): impersonation stops once the informer sees it.
	if err := env.Client.CoreV1().Pods("shop").Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cl := f.client(t, ztToken)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := cl.Sign(ctx, id(t, "shop", "web"), time.Hour)
		if st, _ := status.FromError(unwrapStatus(err)); err != nil && st.Code() == codes.PermissionDenied {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still issuing for a deleted pod: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func serveOnLoopback(t *testing.T, ctx context.Context, authority *certs.CA, srv *ca.Server, serverID spiffeid.ID) *fixture {
	t.Helper()
	serving := must(ca.NewServingIdentity(authority, serverID, nil, time.Hour))
	go serving.Run(ctx)
	<-serving.Ready()
	lis := listen(t)
	done := make(chan error, 1)
	sctx, cancel := context.WithCancel(ctx)
	go func() { done <- srv.Serve(sctx, lis, ca.ServerTLSConfig(serving)) }()
	t.Cleanup(func() { cancel(); <-done })
	return &fixture{ca: authority, addr: lis.Addr().String(), serverID: serverID}
}

// TestRootConfigMapsFollowEnrolmentAndRotation checks that the trust bundle
// is published in the system namespace and every enrolled namespace, kept
// current across a root rotation and manual edits, and withdrawn from
// namespaces that leave the mesh.
func TestRootConfigMapsFollowEnrolmentAndRotation(t *testing.T) {
	env := kubetest.Start(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := &cluster{t: t, ctx: ctx, cs: env.Client}
	c.ns("warren-system", nil)
	c.ns("shop", map[string]string{ca.EnrolLabel: ca.EnrolValue})
	c.ns("plain", nil)
	authority := must(certs.NewCA(certs.Options{TrustDomain: td, DataDir: t.TempDir()}))
	pub := &ca.RootPublisher{Client: env.Client, Bundle: authority.Bundle(), SystemNamespace: "warren-system"}
	done := make(chan error, 1)
	go func() { done <- pub.Start(ctx) }()
	defer func() { cancel(); <-done }()

	cms := env.Client.CoreV1().ConfigMaps
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	holds := func(ns string, roots int) func() bool {
		return func() bool {
			cm, err := cms(ns).Get(ctx, ca.RootConfigMapName, metav1.GetOptions{})
			if err != nil {
				return false
			}
			got, err := certs.ParseCertificates([]byte(cm.Data[ca.RootConfigMapKey]))
			return err == nil && len(got) == roots && cm.Data[ca.RootConfigMapKey] == string(authority.Bundle().PEM())
		}
	}
	absent := func(ns string) func() bool {
		return func() bool {
			_, err := cms(ns).Get(ctx, ca.RootConfigMapName, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		}
	}
	waitFor("root in warren-system", holds("warren-system", 1))
	waitFor("root in enrolled shop", holds("shop", 1))
	time.Sleep(300 * time.Millisecond)
	if !absent("plain")() {
		t.Fatal("root ConfigMap published in a namespace outside the mesh")
	}

	// Rotation step 1 adds a root: every copy follows.
	if _, err := authority.PrepareRoot(); err != nil {
		t.Fatal(err)
	}
	waitFor("two roots in warren-system", holds("warren-system", 2))
	waitFor("two roots in shop", holds("shop", 2))

	// A manual edit is reverted.
	cm := must(cms("shop").Get(ctx, ca.RootConfigMapName, metav1.GetOptions{}))
	cm.Data[ca.RootConfigMapKey] = "tampered"
	must(cms("shop").Update(ctx, cm, metav1.UpdateOptions{}))
	waitFor("tampered root restored", holds("shop", 2))

	// Enrol and unenrol namespaces live.
	ns := must(env.Client.CoreV1().Namespaces().Get(ctx, "plain", metav1.GetOptions{}))
	ns.Labels = map[string]string{ca.EnrolLabel: ca.EnrolValue}
	must(env.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}))
	waitFor("root in newly enrolled plain", holds("plain", 2))
	ns = must(env.Client.CoreV1().Namespaces().Get(ctx, "shop", metav1.GetOptions{}))
	delete(ns.Labels, ca.EnrolLabel)
	must(env.Client.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}))
	waitFor("root withdrawn from unenrolled shop", absent("shop"))
	if !holds("warren-system", 2)() {
		t.Fatal("system namespace lost its root ConfigMap")
	}
}
