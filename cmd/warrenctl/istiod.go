package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/warren-mesh/warren/istiod-lite/xds"
)

// istiodClient reads istiod-lite's debug endpoints on its monitoring
// port (15014): directly (--istiod-addr) or through the API server's
// service proxy.
type istiodClient interface {
	get(ctx context.Context, path string, query url.Values) ([]byte, error)
	// where names the endpoint for messages.
	where() string
}

// istiod returns the client the flags ask for: --istiod-addr, else the
// service proxy of the kubeconfig's cluster.
func (e *env) istiod() (istiodClient, error) {
	if e.flags.istiodAddr != "" {
		return &directIstiod{addr: e.flags.istiodAddr, hc: &http.Client{Timeout: e.flags.timeout}}, nil
	}
	kc, err := e.kube("use --istiod-addr HOST:PORT to reach istiod-lite directly")
	if err != nil {
		return nil, err
	}
	return &kubeIstiod{kc: kc, ns: e.flags.systemNamespace, svc: e.flags.istiodService}, nil
}

type directIstiod struct {
	addr string
	hc   *http.Client
}

func (d *directIstiod) where() string { return "istiod-lite at " + d.addr }

func (d *directIstiod) get(ctx context.Context, path string, query url.Values) ([]byte, error) {
	u := url.URL{Scheme: "http", Host: d.addr, Path: path, RawQuery: query.Encode()}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("--istiod-addr %q: %v", d.addr, err)
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s unreachable: %v", d.where(), transportCause(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("%s: reading %s: %v", d.where(), path, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s: %s", d.where(), path, debugErrorBody(resp.StatusCode, body))
	}
	return body, nil
}

// transportCause strips the "Get "http://...":" wrapper of a transport error.
func transportCause(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("timed out")
	}
	return err
}

// debugErrorBody renders a failed debug answer: the JSON "error" field
// istiod-lite sends, else the body's first line.
func debugErrorBody(code int, body []byte) string {
	var e struct {
		Error   string          `json:"error"`
		Proxies json.RawMessage `json:"proxies"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg := e.Error
		if len(e.Proxies) > 0 {
			var ps []string
			_ = json.Unmarshal(e.Proxies, &ps)
			if len(ps) > 0 {
				msg += " (connected: " + strings.Join(ps, ", ") + ")"
			} else {
				msg += " (no proxy is connected)"
			}
		}
		return msg
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if line == "" {
		line = http.StatusText(code)
	}
	return fmt.Sprintf("%s (HTTP %d)", line, code)
}

type kubeIstiod struct {
	kc      *kubeClients
	ns, svc string
}

func (k *kubeIstiod) where() string {
	return fmt.Sprintf("istiod-lite (service %s/%s:%s via the API server)", k.ns, k.svc, istiodMonitoringPort)
}

func (k *kubeIstiod) get(ctx context.Context, path string, query url.Values) ([]byte, error) {
	params := map[string]string{}
	for key, vs := range query {
		if len(vs) > 0 {
			params[key] = vs[0]
		}
	}
	body, err := k.kc.core.CoreV1().Services(k.ns).ProxyGet("http", k.svc, istiodMonitoringPort, path, params).DoRaw(ctx)
	if err == nil {
		return body, nil
	}
	var se apierrors.APIStatus
	if !errors.As(err, &se) {
		return nil, k.kc.apiError("istiod-lite", err)
	}
	code := int(se.Status().Code)
	switch {
	case code == http.StatusNotFound && se.Status().Details != nil && se.Status().Details.Kind == "services":
		// The API server answers 404 for a missing Service and for a
		// Service without an Endpoints object alike.
		if _, gerr := k.kc.core.CoreV1().Services(k.ns).Get(ctx, k.svc, metav1.GetOptions{}); apierrors.IsNotFound(gerr) {
			return nil, fmt.Errorf("service %s/%s not found: is Warren installed in this cluster? (--istiod-namespace, --istiod-service, or --istiod-addr HOST:PORT)", k.ns, k.svc)
		}
		return nil, k.noEndpoints()
	case code == http.StatusServiceUnavailable && strings.Contains(se.Status().Message, "no endpoints"):
		return nil, k.noEndpoints()
	case code == http.StatusServiceUnavailable && strings.Contains(se.Status().Message, "no service port"):
		return nil, fmt.Errorf("service %s/%s has no port %s (istiod-lite's monitoring port)", k.ns, k.svc, istiodMonitoringPort)
	}
	if len(body) > 0 {
		return nil, fmt.Errorf("%s: %s: %s", k.where(), path, debugErrorBody(code, body))
	}
	return nil, fmt.Errorf("%s: %s: %s", k.where(), path, apiMessage(err))
}

func (k *kubeIstiod) noEndpoints() error {
	return fmt.Errorf("%s has no ready endpoints: is istiod-lite running? (kubectl -n %s get pods -l app=istiod-lite)", k.where(), k.ns)
}

// syncz reads /debug/syncz: one entry per connected xDS stream.
func syncz(ctx context.Context, c istiodClient) ([]xds.ProxyStatus, error) {
	b, err := c.get(ctx, "/debug/syncz", nil)
	if err != nil {
		return nil, err
	}
	var out []xds.ProxyStatus
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: /debug/syncz: %v", c.where(), err)
	}
	return out, nil
}

// istiodStatus reads /debug/status.
func istiodStatus(ctx context.Context, c istiodClient) (*xds.Status, error) {
	b, err := c.get(ctx, "/debug/status", nil)
	if err != nil {
		return nil, err
	}
	var out xds.Status
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: /debug/status: %v", c.where(), err)
	}
	return &out, nil
}

// caDebug is /debug/ca.
type caDebug struct {
	TrustDomain string `json:"trustDomain"`
	Roots       []struct {
		Subject  string    `json:"subject"`
		Serial   string    `json:"serial"`
		NotAfter time.Time `json:"notAfter"`
	} `json:"roots"`
}

func istiodCA(ctx context.Context, c istiodClient) (*caDebug, error) {
	b, err := c.get(ctx, "/debug/ca", nil)
	if err != nil {
		return nil, err
	}
	var out caDebug
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: /debug/ca: %v", c.where(), err)
	}
	return &out, nil
}
