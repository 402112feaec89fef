package cni

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// DefaultSocket is where the node agent serves the plugin.
const DefaultSocket = "/var/run/warren/cni.sock"

// APIVersion prefixes the agent's paths.
const APIVersion = "v1"

// PodRequest describes a pod sandbox to the agent.
type PodRequest struct {
	Namespace   string   `json:"namespace"`
	Name        string   `json:"name"`
	UID         string   `json:"uid,omitempty"`
	ContainerID string   `json:"containerID"`
	Netns       string   `json:"netns"`
	IfName      string   `json:"ifName,omitempty"`
	IPs         []string `json:"ips,omitempty"`
}

// Validate checks the fields the agent needs.
func (r PodRequest) Validate() error {
	if r.Namespace == "" || r.Name == "" {
		return errors.New("cni: request without pod namespace/name")
	}
	if r.Netns == "" {
		return errors.New("cni: request without netns")
	}
	return nil
}

// PodResponse is the agent's answer.
type PodResponse struct {
	// Enrolled is true when the pod is captured (its namespace or labels
	// enrol it); false when it is not meant to be.
	Enrolled bool `json:"enrolled"`
	// Error is set when the pod should be captured and is not.
	Error string `json:"error,omitempty"`
}

// Service is what the agent does for the plugin.
type Service interface {
	// CNIAdd captures the pod if it is to be captured, before returning.
	CNIAdd(ctx context.Context, req PodRequest) (PodResponse, error)
	// CNIDel forgets the sandbox; capture of its netns ends.
	CNIDel(ctx context.Context, req PodRequest) error
	// CNICheck returns an error if the pod should be captured and is not.
	CNICheck(ctx context.Context, req PodRequest) (PodResponse, error)
}

// Server serves a Service on a unix socket (HTTP/1.1, JSON).
type Server struct {
	path string
	ln   net.Listener
	srv  *http.Server
}

// Listen creates the socket (mode 0600) at path.
func Listen(path string, svc Service) (*Server, error) {
	if path == "" {
		path = DefaultSocket
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cni: %w", err)
	}
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("cni: listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("cni: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /"+APIVersion+"/add", handle(svc.CNIAdd))
	mux.HandleFunc("POST /"+APIVersion+"/check", handle(svc.CNICheck))
	mux.HandleFunc("POST /"+APIVersion+"/del", handle(func(ctx context.Context, r PodRequest) (PodResponse, error) {
		return PodResponse{}, svc.CNIDel(ctx, r)
	}))
	mux.HandleFunc("GET /"+APIVersion+"/ready", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	return &Server{path: path, ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}}, nil
}

func handle(fn func(context.Context, PodRequest) (PodResponse, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req PodRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, PodResponse{Error: "cni: bad request: " + err.Error()})
			return
		}
		if err := req.Validate(); err != nil {
			writeJSON(w, http.StatusBadRequest, PodResponse{Error: err.Error()})
			return
		}
		resp, err := fn(r.Context(), req)
		if err != nil {
			resp.Error = err.Error()
			writeJSON(w, http.StatusInternalServerError, resp)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// Serve serves until Close.
func (s *Server) Serve() error {
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("cni: %w", err)
	}
	return nil
}

// Path returns the socket path.
func (s *Server) Path() string { return s.path }

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	err := s.srv.Close()
	os.Remove(s.path)
	return err
}

// ErrUnreachable wraps failures to reach the agent at all (as opposed to
// the agent answering with an error).
var ErrUnreachable = errors.New("node agent unreachable")

// Client talks to the agent's socket.
type Client struct {
	path string
	hc   *http.Client
}

// NewClient returns a client for the agent at path with a per-request
// timeout.
func NewClient(path string, timeout time.Duration) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}
	return &Client{path: path, hc: &http.Client{Transport: tr, Timeout: timeout}}
}

func (c *Client) call(ctx context.Context, op string, req PodRequest) (PodResponse, error) {
	b, _ := json.Marshal(req)
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://warren-agent/"+APIVersion+"/"+op, bytes.NewReader(b))
	if err != nil {
		return PodResponse{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(hr)
	if err != nil {
		return PodResponse{}, fmt.Errorf("cni: %w at %s: %v", ErrUnreachable, c.path, err)
	}
	defer resp.Body.Close()
	var pr PodResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&pr); err != nil {
		return PodResponse{}, fmt.Errorf("cni: agent answered %s with an unreadable body: %v", resp.Status, err)
	}
	if resp.StatusCode != http.StatusOK || pr.Error != "" {
		if pr.Error == "" {
			pr.Error = resp.Status
		}
		return pr, fmt.Errorf("cni: agent: %s", pr.Error)
	}
	return pr, nil
}

// Add asks the agent to capture the pod.
func (c *Client) Add(ctx context.Context, req PodRequest) (PodResponse, error) {
	return c.call(ctx, "add", req)
}

// Del tells the agent the sandbox is gone.
func (c *Client) Del(ctx context.Context, req PodRequest) error {
	_, err := c.call(ctx, "del", req)
	return err
}

// Check asks the agent whether the pod is captured as it should be.
func (c *Client) Check(ctx context.Context, req PodRequest) (PodResponse, error) {
	return c.call(ctx, "check", req)
}

// Ready checks that the agent answers.
func (c *Client) Ready(ctx context.Context) error {
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://warren-agent/"+APIVersion+"/ready", nil)
	if err != nil {
		return err
	}
	resp, err := c.hc.Do(hr)
	if err != nil {
		return fmt.Errorf("cni: %w at %s: %v", ErrUnreachable, c.path, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cni: agent not ready: %s", resp.Status)
	}
	return nil
}
