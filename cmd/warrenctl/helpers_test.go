package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// fixedNow is the clock of every golden test; recorded inputs are dated
// relative to it.
var fixedNow = time.Date(2026, 9, 1, 12, 0, 0, 0, time.UTC)

// cli runs one command line in-process with a fixed clock.
func cli(t *testing.T, e *env, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if e == nil {
		e = &env{}
	}
	if e.now == nil {
		e.now = func() time.Time { return fixedNow }
	}
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb, e)
	return out.String(), errb.String(), code
}

// noKubeconfig points client-go at nothing, so no test reaches a real
// cluster by accident.
func noKubeconfig(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	t.Setenv("KUBECONFIG", filepath.Join(dir, "missing"))
	t.Setenv("HOME", dir)
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
}

// golden compares got with testdata/golden/name, rewriting it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./cmd/warrenctl -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from the golden file (run with -update to accept):\n%s", name, diffLines(string(want), got))
	}
}

// diffLines shows the first differing lines.
func diffLines(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			b.WriteString("line " + itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl + "\n")
			if shown++; shown == 5 {
				break
			}
		}
	}
	return b.String()
}

func itoa(i int) string { return strconv.Itoa(i) }

// testMesh loads a testdata directory.
func testMesh(t *testing.T, dir string) *mesh {
	t.Helper()
	snap, err := load(filepath.Join("testdata", dir))
	if err != nil {
		t.Fatal(err)
	}
	return newMesh(snap, false, dir, nil)
}
