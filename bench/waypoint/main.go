// Command waypoint is the benchmark helper for the waypoint's L7 engine
// (bench/waypoint.sh): it generates one route table — a mesh in YAML with
// N HTTPRoute rules of path and header matches over a Service with two
// endpoints — translates it with istiod-lite's translator, writes the
// equivalent NGINX and HAProxy configurations from the translated table
// (same routes, same order), and serves the engine on a plaintext
// listener from the same YAML.
//
//	waypoint gen -out DIR -routes 100 -backends 127.0.0.2:18081,127.0.0.3:18082 -listen 127.0.0.1:18080
//	waypoint serve -config DIR/mesh.yaml -listen 127.0.0.1:18080
//
// It lives under bench/ because it imports istiod-lite's file source and
// translator, which the waypoint itself must not (DESIGN §2).
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	warrenv1 "github.com/warren-mesh/warren/istiod-lite/api/warren/v1"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
	"github.com/warren-mesh/warren/waypoint"
)

// ServiceKey is the benchmarked destination.
const ServiceKey = "bench/echo.bench.svc.cluster.local"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: waypoint gen|serve [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "gen":
		err = gen(os.Args[2:])
	case "serve":
		err = serve(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "waypoint bench:", err)
		os.Exit(1)
	}
}

// Load translates a YAML mesh into a waypoint Config.
func Load(path string) (waypoint.Config, error) {
	var snap *model.Snapshot
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		snap, err = file.LoadDir(path)
		if err != nil {
			return waypoint.Config{}, err
		}
	} else {
		data, err := os.ReadFile(path)
		if err != nil {
			return waypoint.Config{}, err
		}
		if snap, err = file.Parse(path, data); err != nil {
			return waypoint.Config{}, err
		}
	}
	out := translate.Translate(model.NewIndex(snap))
	return waypoint.Config{L7Services: out.L7Services, Services: out.Services, Workloads: out.Workloads, Authorizations: out.Authorizations}, nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	cfgPath := fs.String("config", "", "mesh YAML (file or directory)")
	listen := fs.String("listen", "127.0.0.1:18080", "plaintext listen address")
	accessLog := fs.Bool("access-log", false, "write the JSON access log to stdout")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here until exit")
	_ = fs.Parse(args)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	cfg, err := Load(*cfgPath)
	if err != nil {
		return err
	}
	store := waypoint.NewStore(waypoint.StoreOptions{})
	if err := store.Replace(cfg); err != nil {
		return err
	}
	opts := waypoint.Options{Store: store, Registerer: prometheus.NewRegistry()}
	if *accessLog {
		opts.AccessLog = os.Stdout
	}
	eng, err := waypoint.New(opts)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); _ = eng.Close() }()
	err = eng.ServePlaintext(ln, waypoint.Destination{Service: ServiceKey, Port: 80, SourceNamespace: "client"})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func gen(args []string) error {
	fs := flag.NewFlagSet("gen", flag.ExitOnError)
	out := fs.String("out", "bench/out/waypoint", "output directory")
	routes := fs.Int("routes", 100, "number of route rules")
	backends := fs.String("backends", "127.0.0.2:18081,127.0.0.3:18082", "the two backend endpoints ip:port")
	nginxListen := fs.String("nginx-listen", "127.0.0.1:18090", "NGINX proxy listen address")
	haproxyListen := fs.String("haproxy-listen", "127.0.0.1:18091", "HAProxy listen address")
	h2Offset := fs.Int("h2-port-offset", 10, "h2c listeners listen on port+offset")
	_ = fs.Parse(args)
	eps := strings.Split(*backends, ",")
	if len(eps) != 2 {
		return fmt.Errorf("-backends wants two endpoints")
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	doc := meshYAML(*routes, eps)
	meshPath := filepath.Join(*out, "mesh.yaml")
	if err := os.WriteFile(meshPath, []byte(doc), 0o644); err != nil {
		return err
	}
	cfg, err := Load(meshPath)
	if err != nil {
		return err
	}
	l7 := cfg.L7Services[ServiceKey]
	if l7 == nil || len(l7.GetPorts()) == 0 || l7.GetPorts()[0].GetProducer() == nil {
		return fmt.Errorf("translation produced no route table for %s", ServiceKey)
	}
	table := l7.GetPorts()[0].GetProducer().GetRoutes()
	if len(table) != *routes {
		return fmt.Errorf("translated %d routes, want %d", len(table), *routes)
	}
	nginx, err := nginxConf(table, eps, *nginxListen, *h2Offset)
	if err != nil {
		return err
	}
	haproxy, err := haproxyConf(table, eps, *haproxyListen, *h2Offset)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "nginx.conf"), []byte(nginx), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*out, "haproxy.cfg"), []byte(haproxy), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s, nginx.conf, haproxy.cfg (%d routes, table order from the translator)\n", meshPath, len(table))
	return nil
}

// meshYAML renders the benchmark mesh: namespace bench with a waypoint,
// Service echo (port 80) with two pods, and HTTPRoutes with n rules:
// even rules are PathPrefix /svcN plus header x-route: rN, odd rules are
// Exact /exact/N. Rules are split over routes of 16 (the API's limit).
func meshYAML(n int, eps []string) string {
	var b strings.Builder
	b.WriteString(`apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: warren-waypoint}
spec: {controllerName: warren.io/waypoint-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: bench, labels: {warren.io/dataplane-mode: ambient, warren.io/use-waypoint: waypoint}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: bench, generation: 1}
spec:
  gatewayClassName: warren-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
---
apiVersion: v1
kind: Service
metadata: {name: waypoint, namespace: bench}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: mesh, port: 15008, targetPort: 15008}]
---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: bench}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, targetPort: http, appProtocol: http}]
  selector: {app: echo}
`)
	for i, ep := range eps {
		host, port, _ := net.SplitHostPort(ep)
		fmt.Fprintf(&b, `---
apiVersion: v1
kind: Pod
metadata: {name: echo-%d, namespace: bench, labels: {app: echo}}
spec:
  nodeName: node-a
  containers: [{name: app, image: app, ports: [{name: http, containerPort: %s}]}]
status:
  phase: Running
  podIP: %s
  podIPs: [{ip: %s}]
  conditions: [{type: Ready, status: "True"}]
`, i, port, host, host)
	}
	for start := 0; start < n; start += 16 {
		fmt.Fprintf(&b, `---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: routes-%03d, namespace: bench, generation: 1, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{group: "", kind: Service, name: echo}]
  rules:
`, start)
		for i := start; i < n && i < start+16; i++ {
			if i%2 == 0 {
				fmt.Fprintf(&b, "  - matches: [{path: {type: PathPrefix, value: /svc%d}, headers: [{name: x-route, value: r%d}]}]\n    backendRefs: [{name: echo, port: 80}]\n", i, i)
			} else {
				fmt.Fprintf(&b, "  - matches: [{path: {type: Exact, value: /exact/%d}}]\n    backendRefs: [{name: echo, port: 80}]\n", i)
			}
		}
	}
	return b.String()
}

func portPlus(addr string, off int) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	p, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(p+off)), nil
}

// nginxConf renders the table for NGINX: exact matches as "location =",
// prefixes as "location /p/" plus "location = /p" (segment semantics),
// header conditions as an if returning 404 (the generated table has no
// overlapping routes, so falling through to 404 is the same answer).
func nginxConf(routes []*warrenv1.Route, eps []string, listen string, h2off int) (string, error) {
	h2, err := portPlus(listen, h2off)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# generated by bench/waypoint gen: the same %d routes as the waypoint's table
worker_processes 1;
daemon off;
pid PREFIX/nginx.pid;
error_log PREFIX/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path PREFIX/nginx-tmp;
  proxy_temp_path PREFIX/nginx-tmp;
  fastcgi_temp_path PREFIX/nginx-tmp;
  uwsgi_temp_path PREFIX/nginx-tmp;
  scgi_temp_path PREFIX/nginx-tmp;
  keepalive_requests 1000000;
  upstream echo {
    server %s;
    server %s;
    keepalive 128;
  }
  server {
    listen %s reuseport;
    listen %s http2;
    location / { return 404; }
`, len(routes), eps[0], eps[1], listen, h2)
	for _, r := range routes {
		m := r.GetMatch()
		cond := ""
		for _, h := range m.GetHeaders() {
			cond += fmt.Sprintf("      if ($http_%s != %q) { return 404; }\n", strings.ReplaceAll(h.GetName(), "-", "_"), h.GetValue())
		}
		body := cond + "      proxy_pass http://echo;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n"
		switch p := m.GetPath(); p.GetType() {
		case warrenv1.MatchType_EXACT:
			fmt.Fprintf(&b, "    location = %s {\n%s    }\n", p.GetValue(), body)
		case warrenv1.MatchType_PREFIX:
			v := strings.TrimRight(p.GetValue(), "/")
			fmt.Fprintf(&b, "    location = %s {\n%s    }\n    location %s/ {\n%s    }\n", v, body, v, body)
		default:
			return "", fmt.Errorf("route kind %v not rendered", p.GetType())
		}
	}
	b.WriteString("  }\n}\n")
	return b.String(), nil
}

// haproxyConf renders the table for HAProxy as ordered use_backend rules
// (first match wins, as in the waypoint).
func haproxyConf(routes []*warrenv1.Route, eps []string, listen string, h2off int) (string, error) {
	h2, err := portPlus(listen, h2off)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, `# generated by bench/waypoint gen: the same %d routes as the waypoint's table
global
  nbthread 1
  maxconn 4000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
  option http-keep-alive
frontend fe
  bind %s
  bind %s proto h2
`, len(routes), listen, h2)
	for i, r := range routes {
		m := r.GetMatch()
		var conds []string
		switch p := m.GetPath(); p.GetType() {
		case warrenv1.MatchType_EXACT:
			conds = append(conds, fmt.Sprintf("{ path %s }", p.GetValue()))
		case warrenv1.MatchType_PREFIX:
			v := strings.TrimRight(p.GetValue(), "/")
			conds = append(conds, fmt.Sprintf("{ path %s } || { path_beg %s/ }", v, v))
		default:
			return "", fmt.Errorf("route kind %v not rendered", p.GetType())
		}
		for _, h := range m.GetHeaders() {
			conds = append(conds, fmt.Sprintf("{ req.hdr(%s) -m str %s }", h.GetName(), h.GetValue()))
		}
		// HAProxy has no parentheses in conditions: expand (a || b) && c.
		if len(conds) == 2 && strings.Contains(conds[0], "||") {
			parts := strings.Split(conds[0], " || ")
			fmt.Fprintf(&b, "  use_backend echo if %s %s || %s %s  # route %d\n", parts[0], conds[1], parts[1], conds[1], i)
		} else {
			fmt.Fprintf(&b, "  use_backend echo if %s  # route %d\n", strings.Join(conds, " "), i)
		}
	}
	fmt.Fprintf(&b, `  default_backend notfound
backend echo
  balance roundrobin
  http-reuse always
  server e0 %s
  server e1 %s
backend notfound
  http-request return status 404
`, eps[0], eps[1])
	return b.String(), nil
}
