package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Reply is the JSON body of every HTTP answer.
type Reply struct {
	Pod        string              `json:"pod"`
	Namespace  string              `json:"namespace"`
	Node       string              `json:"node"`
	PodIP      string              `json:"podIP"`
	RemoteAddr string              `json:"remoteAddr"`
	Host       string              `json:"host"`
	Method     string              `json:"method"`
	Path       string              `json:"path"`
	Headers    map[string][]string `json:"headers"`
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func main() {
	httpAddr := flag.String("http", ":8080", "HTTP listen address (empty: off)")
	tcpAddr := flag.String("tcp", ":9000", "TCP echo listen address (empty: off)")
	flag.Parse()
	host, _ := os.Hostname()
	me := Reply{Pod: env("POD_NAME", host), Namespace: env("POD_NAMESPACE", ""), Node: env("NODE_NAME", ""), PodIP: env("POD_IP", "")}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)

	srv := &http.Server{Addr: *httpAddr, Handler: handler(me), ReadHeaderTimeout: 10 * time.Second}
	if *httpAddr != "" {
		ln, err := listen(*httpAddr)
		if err != nil {
			log.Fatalf("echo: http: %v", err)
		}
		go func() {
			if err := srv.Serve(ln); err != http.ErrServerClosed {
				log.Fatalf("echo: http: %v", err)
			}
		}()
	}
	if *tcpAddr != "" {
		ln, err := listen(*tcpAddr)
		if err != nil {
			log.Fatalf("echo: tcp: %v", err)
		}
		go serveTCP(ln, me.Pod)
	}
	log.Printf("echo: pod %s serving http %q tcp %q", me.Pod, *httpAddr, *tcpAddr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
}

// handler answers /healthz, and everything else with who it is and what it saw.
func handler(me Reply) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/lookup", lookup(net.DefaultResolver))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rep := me
		rep.RemoteAddr, rep.Host, rep.Method, rep.Path, rep.Headers = r.RemoteAddr, r.Host, r.Method, r.URL.Path, r.Header
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Echo-Pod", me.Pod)
		json.NewEncoder(w).Encode(rep)
	})
	return mux
}

// Lookup is the JSON body of /lookup?name=<host>.
type Lookup struct {
	Name  string   `json:"name"`
	Addrs []string `json:"addrs,omitempty"`
	Error string   `json:"error,omitempty"`
}

// lookup resolves the name query parameter as any application in the pod
// does (its resolv.conf: cluster DNS, search list, ndots), for tests of the
// cluster DNS. A failed lookup answers 502 with the error.
func lookup(r *net.Resolver) http.HandlerFunc {
	return func(w http.ResponseWriter, req *http.Request) {
		res := Lookup{Name: req.URL.Query().Get("name")}
		ctx, cancel := context.WithTimeout(req.Context(), 5*time.Second)
		defer cancel()
		addrs, err := r.LookupHost(ctx, res.Name)
		res.Addrs = addrs
		w.Header().Set("Content-Type", "application/json")
		if err != nil {
			res.Error = err.Error()
			w.WriteHeader(http.StatusBadGateway)
		}
		json.NewEncoder(w).Encode(res)
	}
}

// listen opens a plain TCP listener (no MPTCP, so the socket works with every
// redirect mechanism a mesh may put in front of it).
func listen(addr string) (net.Listener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	return lc.Listen(context.Background(), "tcp", addr)
}

func serveTCP(ln net.Listener, pod string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Printf("echo: tcp accept: %v", err)
			return
		}
		go func() {
			defer c.Close()
			fmt.Fprintf(c, "pod=%s\n", pod)
			io.Copy(c, bufio.NewReader(c))
		}()
	}
}
