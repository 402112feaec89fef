package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHTTPNamesThePod(t *testing.T) {
	srv := httptest.NewServer(handler(Reply{Pod: "echo-1", Node: "wk-node1"}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/some/path")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r Reply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatal(err)
	}
	if r.Pod != "echo-1" || r.Node != "wk-node1" || r.Path != "/some/path" || r.RemoteAddr == "" || resp.Header.Get("X-Echo-Pod") != "echo-1" {
		t.Fatalf("reply %+v", r)
	}
}

func TestTCPGreetsAndEchoes(t *testing.T) {
	ln, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go serveTCP(ln, "echo-2")
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil || line != "pod=echo-2\n" {
		t.Fatalf("greeting %q %v", line, err)
	}
	io.WriteString(conn, "hello\n")
	back, err := br.ReadString('\n')
	if err != nil || strings.TrimSpace(back) != "hello" {
		t.Fatalf("echo %q %v", back, err)
	}
}

func TestLookup(t *testing.T) {
	srv := httptest.NewServer(handler(Reply{Pod: "echo-1"}))
	defer srv.Close()
	for _, tc := range []struct {
		name string
		code int
	}{{"localhost", http.StatusOK}, {"no-such-host.invalid", http.StatusBadGateway}} {
		resp, err := http.Get(srv.URL + "/lookup?name=" + tc.name)
		if err != nil {
			t.Fatal(err)
		}
		var l Lookup
		err = json.NewDecoder(resp.Body).Decode(&l)
		resp.Body.Close()
		if err != nil || resp.StatusCode != tc.code || l.Name != tc.name || (tc.code == http.StatusOK) != (len(l.Addrs) > 0 && l.Error == "") {
			t.Fatalf("lookup %s: %d %+v %v", tc.name, resp.StatusCode, l, err)
		}
	}
}
