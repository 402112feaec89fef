package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	gwclient "sigs.k8s.io/gateway-api/pkg/client/clientset/versioned"
)

// kubeClients are the API clients of one kubeconfig context.
type kubeClients struct {
	core kubernetes.Interface
	gw   gwclient.Interface
	dyn  dynamic.Interface
	// config is nil for fake clients (port-forward needs a real one).
	config *rest.Config
	// namespace is the context's namespace ("default" when unset).
	namespace string
	// host is the API server URL, for error messages.
	host string
}

// kube returns the clients for the kubeconfig flags, built once. hint is
// appended to the "no kubeconfig" error: how to do without a cluster.
func (e *env) kube(hint string) (*kubeClients, error) {
	if e.kubeOverride != nil {
		return e.kubeOverride, nil
	}
	if e.kubeCache != nil {
		return e.kubeCache, nil
	}
	kc, err := buildKube(e.flags)
	if err != nil {
		if errors.Is(err, errNoKubeconfig) && hint != "" {
			return nil, fmt.Errorf("%w, or %s", err, hint)
		}
		return nil, err
	}
	e.kubeCache = kc
	return kc, nil
}

var errNoKubeconfig = errors.New("no kubeconfig: pass --kubeconfig or set KUBECONFIG")

func buildKube(f globalFlags) (*kubeClients, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if f.kubeconfig != "" {
		if _, err := os.Stat(f.kubeconfig); err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", f.kubeconfig, unwrapPathError(err))
		}
		rules.ExplicitPath = f.kubeconfig
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: f.context})
	cfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, errNoKubeconfig
		}
		return nil, fmt.Errorf("kubeconfig: %v", err)
	}
	cfg.Timeout = f.timeout
	cfg.QPS, cfg.Burst = 50, 100
	ns, _, err := cc.Namespace()
	if err != nil || ns == "" {
		ns = "default"
	}
	kc := &kubeClients{config: cfg, namespace: ns, host: cfg.Host}
	if kc.core, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	if kc.gw, err = gwclient.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	if kc.dyn, err = dynamic.NewForConfig(cfg); err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return kc, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// apiError makes an API error one readable line: what failed and the
// cause, with the API server named when it cannot be reached.
func (kc *kubeClients) apiError(what string, err error) error {
	if err == nil {
		return nil
	}
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ue) || errors.As(err, &ne) {
		cause := err
		if ue != nil {
			cause = ue.Err
		}
		return fmt.Errorf("cannot reach the Kubernetes API server at %s: %v", kc.host, cause)
	}
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%s: forbidden: %s", what, apiMessage(err))
	}
	return fmt.Errorf("%s: %s", what, apiMessage(err))
}

func apiMessage(err error) string {
	var se apierrors.APIStatus
	if errors.As(err, &se) && se.Status().Message != "" {
		return strings.TrimSpace(se.Status().Message)
	}
	return err.Error()
}
