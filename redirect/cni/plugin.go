package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
)

// PluginName is the "type" of the plugin in a conflist.
const PluginName = "warren-cni"

// Versions are the CNI spec versions the plugin accepts.
var Versions = version.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0")

// Config is the plugin's entry in a conflist, e.g.
//
//	{"type": "warren-cni", "agentSocket": "/var/run/warren/cni.sock",
//	 "failOpen": false, "timeout": "10s"}
type Config struct {
	types.PluginConf
	// AgentSocket is the node agent's socket. Default DefaultSocket.
	AgentSocket string `json:"agentSocket,omitempty"`
	// FailOpen lets pods start uncaptured when the agent is unreachable.
	// Default false: the sandbox fails and the runtime retries.
	FailOpen bool `json:"failOpen,omitempty"`
	// Timeout bounds the agent's answer ("10s" by default).
	Timeout string `json:"timeout,omitempty"`
}

// ParseConfig reads the plugin configuration and its prevResult.
func ParseConfig(stdin []byte) (*Config, time.Duration, error) {
	c := &Config{}
	if err := json.Unmarshal(stdin, c); err != nil {
		return nil, 0, fmt.Errorf("cni: parse config: %w", err)
	}
	if c.AgentSocket == "" {
		c.AgentSocket = DefaultSocket
	}
	timeout := 10 * time.Second
	if c.Timeout != "" {
		d, err := time.ParseDuration(c.Timeout)
		if err != nil || d <= 0 {
			return nil, 0, fmt.Errorf("cni: bad timeout %q", c.Timeout)
		}
		timeout = d
	}
	if c.RawPrevResult != nil {
		if err := version.ParsePrevResult(&c.PluginConf); err != nil {
			return nil, 0, fmt.Errorf("cni: parse prevResult: %w", err)
		}
	}
	return c, timeout, nil
}

// k8sArgs are the CNI_ARGS Kubernetes runtimes pass.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString
	K8S_POD_NAME               types.UnmarshallableString
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString
	K8S_POD_UID                types.UnmarshallableString
}

// Agent is what the plugin needs of the node agent (*Client implements it).
type Agent interface {
	Add(ctx context.Context, req PodRequest) (PodResponse, error)
	Del(ctx context.Context, req PodRequest) error
	Check(ctx context.Context, req PodRequest) (PodResponse, error)
	Ready(ctx context.Context) error
}

// Plugin implements the CNI commands.
type Plugin struct {
	// NewAgent returns the agent client for a socket path and timeout.
	// Default NewClient.
	NewAgent func(socket string, timeout time.Duration) Agent
	// Print writes the result (default types.PrintResult to stdout).
	Print func(r types.Result, cniVersion string) error
}

// Funcs returns the skel callbacks.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, Status: p.Status}
}

func (p *Plugin) agent(c *Config, timeout time.Duration) Agent {
	if p.NewAgent != nil {
		return p.NewAgent(c.AgentSocket, timeout)
	}
	return NewClient(c.AgentSocket, timeout)
}

func (p *Plugin) print(r types.Result, v string) error {
	if p.Print != nil {
		return p.Print(r, v)
	}
	return types.PrintResult(r, v)
}

// request builds the agent request from the CNI arguments; ok is false
// when the runtime is not Kubernetes (no pod to enrol).
func request(args *skel.CmdArgs, prev types.Result) (PodRequest, bool, error) {
	var ka k8sArgs
	if err := types.LoadArgs(args.Args, &ka); err != nil {
		return PodRequest{}, false, fmt.Errorf("cni: CNI_ARGS: %w", err)
	}
	req := PodRequest{
		Namespace:   string(ka.K8S_POD_NAMESPACE),
		Name:        string(ka.K8S_POD_NAME),
		UID:         string(ka.K8S_POD_UID),
		ContainerID: args.ContainerID,
		Netns:       args.Netns,
		IfName:      args.IfName,
	}
	if req.Namespace == "" || req.Name == "" {
		return req, false, nil
	}
	if prev != nil {
		res, err := current.NewResultFromResult(prev)
		if err != nil {
			return req, false, fmt.Errorf("cni: prevResult: %w", err)
		}
		for _, ip := range res.IPs {
			req.IPs = append(req.IPs, ip.Address.IP.String())
		}
	}
	return req, true, nil
}

// Add captures the pod (through the agent) and passes prevResult on.
func (p *Plugin) Add(args *skel.CmdArgs) error {
	c, timeout, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if c.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "warren-cni must be chained after a plugin that sets up the interface (no prevResult)", "")
	}
	req, ok, err := request(args, c.PrevResult)
	if err != nil {
		return err
	}
	if ok {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err := p.agent(c, timeout).Add(ctx, req)
		switch {
		case err == nil:
		case errors.Is(err, ErrUnreachable) && c.FailOpen:
			// Configured to let pods start uncaptured without an agent.
		case errors.Is(err, ErrUnreachable):
			return types.NewError(types.ErrTryAgainLater,
				fmt.Sprintf("warren-cni: pod %s/%s not started: the Warren node agent is unreachable, so its traffic could not be captured (set failOpen in the CNI config to allow uncaptured pods)", req.Namespace, req.Name),
				err.Error())
		default:
			return types.NewError(types.ErrTryAgainLater,
				fmt.Sprintf("warren-cni: pod %s/%s not started: capture failed", req.Namespace, req.Name), err.Error())
		}
	}
	return p.print(c.PrevResult, c.CNIVersion)
}

// Del tells the agent; it never fails because the agent is away, so
// sandboxes can always be torn down.
func (p *Plugin) Del(args *skel.CmdArgs) error {
	c, timeout, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	req, ok, err := request(args, nil)
	if err != nil || !ok || req.Netns == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.agent(c, timeout).Del(ctx, req); err != nil && !errors.Is(err, ErrUnreachable) {
		return types.NewError(types.ErrInternal, "warren-cni: agent refused DEL", err.Error())
	}
	return nil
}

// Check verifies with the agent that the pod is captured if it should be.
func (p *Plugin) Check(args *skel.CmdArgs) error {
	c, timeout, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if c.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "warren-cni must be chained (no prevResult)", "")
	}
	req, ok, err := request(args, c.PrevResult)
	if err != nil || !ok {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if _, err := p.agent(c, timeout).Check(ctx, req); err != nil {
		if errors.Is(err, ErrUnreachable) && c.FailOpen {
			return nil
		}
		return types.NewError(types.ErrInternal, fmt.Sprintf("warren-cni: pod %s/%s: capture check failed", req.Namespace, req.Name), err.Error())
	}
	return nil
}

// Status (CNI 1.1) reports whether pods can be created: with failOpen
// always, otherwise only when the agent answers.
func (p *Plugin) Status(args *skel.CmdArgs) error {
	c, timeout, err := ParseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if c.FailOpen {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := p.agent(c, timeout).Ready(ctx); err != nil {
		return types.NewError(50, "warren-cni: node agent unreachable", err.Error()) // 50: plugin not available
	}
	return nil
}
