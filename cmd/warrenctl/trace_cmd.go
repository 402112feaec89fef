package main

import (
	"net/http"
	"net/textproto"
	"strings"

	"github.com/spf13/cobra"

	"github.com/warren-mesh/warren/istiod-lite/translate"
)

func newTrace(e *env) *cobra.Command {
	var (
		from, method, dir string
		headers           []string
		local             bool
	)
	cmd := &cobra.Command{
		Use:   "trace --from pod/NAMESPACE/NAME URL",
		Short: "Explain one request hop by hop: capture, ztunnel, waypoint, route, filters, backend, endpoint, identity",
		Long: `trace predicts what the mesh does with one request from a pod, from the live
configuration — no packet is sent. It follows the waypoint's own request path:
capture into ztunnel → ztunnel's choice (the Service's waypoint, or an endpoint
directly) → the waypoint's authorization → route table (the consumer table of the
client's namespace, else the producer table; none → the Service's endpoints) →
every route entry tried in precedence order with the reason it did not match
(none → 404, gRPC UNIMPLEMENTED) → filters (redirects answer at once) → weighted
backends → endpoints with their expected share → the identity each HBONE hop
checks and the destination's L4 policy.

Live, the configuration is istiod-lite's latest translation (/debug/translation:
what the proxies were sent); with --local, or when istiod-lite cannot be
reached, the cluster's objects are translated locally. With -f it works offline
on a directory of YAML.

URL: http://HOST[:PORT]/PATH (also grpc://, h2c://, https://, tcp://HOST:PORT).
HOST is a Service name (short names resolve in the client's namespace), a
Service's cluster IP or a pod IP. gRPC: grpc://HOST:PORT/package.Service/Method.`,
		Example: `  warrenctl x trace --from pod/client/curl-0 http://echo.server/
  warrenctl x trace --from client/curl-0 http://echo.server/api/v2 -H 'x-canary: true'
  warrenctl x trace --from pod/client/curl-0 -X POST http://10.96.0.20/login -o json
  warrenctl x trace --from pod/client/grpc-client grpc://greeter.server:7070/helloworld.Greeter/SayHello
  warrenctl x trace -f examples/ --from pod/client/curl-0 http://echo.server/   # offline`,
		Args: exactArgs(1, "URL"),
	}
	out := addOutputFlag(cmd, formatTable)
	fl := cmd.Flags()
	fl.StringVar(&from, "from", "", "client pod: pod/NAMESPACE/NAME, NAMESPACE/NAME, or NAME in -n")
	fl.StringVarP(&method, "method", "X", http.MethodGet, "HTTP method")
	fl.StringArrayVarP(&headers, "header", "H", nil, "request header 'Name: value' (repeatable)")
	fl.StringVarP(&dir, "filename", "f", "", "offline: a directory of YAML (or one file) instead of the cluster")
	fl.BoolVar(&local, "local", false, "live: translate the cluster's objects locally instead of reading istiod-lite's translation")
	_ = cmd.MarkFlagRequired("from")
	_ = cmd.MarkFlagDirname("filename")
	_ = cmd.RegisterFlagCompletionFunc("from", completeObjects(e, "pod"))
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		ns, name, err := e.parsePodRef(from)
		if err != nil {
			return err
		}
		hdr := http.Header{}
		for _, h := range headers {
			k, v, ok := strings.Cut(h, ":")
			if !ok || strings.TrimSpace(k) == "" {
				return usagef("-H %q: want 'Name: value'", h)
			}
			hdr.Add(textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k)), strings.TrimSpace(v))
		}
		cfg, why, source, notes, err := e.traceConfig(cmd, dir, local)
		if err != nil {
			return err
		}
		p, err := predictTrace(cfg, why, traceRequest{FromNamespace: ns, FromName: name, Method: strings.ToUpper(method), URL: args[0], Header: hdr})
		if err != nil {
			return err
		}
		p.ConfigFrom = source
		p.Notes = append(notes, p.Notes...)
		if out.value != formatTable {
			return writeStructured(cmd.OutOrStdout(), out.value, p)
		}
		return writeTrace(cmd.OutOrStdout(), p)
	}
	return cmd
}

// traceConfig picks the configuration a trace reads and says which.
func (e *env) traceConfig(cmd *cobra.Command, dir string, local bool) (*translate.Output, traceWhy, string, []string, error) {
	ctx := cmd.Context()
	if dir != "" {
		m, err := e.loadMesh(ctx, dir)
		if err != nil {
			return nil, traceWhy{}, "", nil, err
		}
		return m.out, traceWhy{m}, "translation of " + dir + " (offline)", nil, nil
	}
	var m *mesh
	var mErr error
	if _, err := e.kube(""); err == nil {
		m, mErr = e.loadMesh(ctx, "")
	} else if e.flags.istiodAddr == "" || local {
		_, err := e.kube("use -f DIR to trace offline")
		return nil, traceWhy{}, "", nil, err
	}
	if local {
		if mErr != nil {
			return nil, traceWhy{}, "", nil, mErr
		}
		return m.out, traceWhy{m}, "local translation of the objects in " + m.source, m.notes, nil
	}
	ic, err := e.istiod()
	if err != nil {
		return nil, traceWhy{}, "", nil, err
	}
	out, iErr := istiodTranslation(ctx, ic)
	switch {
	case iErr == nil && m != nil:
		return out, traceWhy{m}, "istiod-lite's latest translation (what the proxies were sent), " + ic.where(), m.notes, nil
	case iErr == nil:
		note := "no API access: the labels that decided are not shown"
		if mErr != nil {
			note = "reading the objects failed (" + oneLine(mErr.Error()) + "): the labels that decided are not shown"
		}
		return out, traceWhy{}, "istiod-lite's latest translation (what the proxies were sent), " + ic.where(), []string{note}, nil
	case m != nil:
		return m.out, traceWhy{m}, "local translation of the objects in " + m.source,
			append([]string{"istiod-lite could not be read (" + oneLine(iErr.Error()) + "): predicted from a local translation of the same objects"}, m.notes...), nil
	case mErr != nil:
		return nil, traceWhy{}, "", nil, mErr
	}
	return nil, traceWhy{}, "", nil, iErr
}

// parsePodRef accepts pod/NS/NAME, pod/NAME, NS/NAME or NAME (in -n).
func (e *env) parsePodRef(s string) (string, string, error) {
	s = strings.TrimPrefix(s, "pod/")
	s = strings.TrimPrefix(s, "pods/")
	parts := strings.Split(s, "/")
	switch {
	case len(parts) == 1 && parts[0] != "":
		return e.namespaceOf(), parts[0], nil
	case len(parts) == 2 && parts[0] != "" && parts[1] != "":
		return parts[0], parts[1], nil
	}
	return "", "", usagef("--from %q: want pod/NAMESPACE/NAME, NAMESPACE/NAME or NAME", s)
}
