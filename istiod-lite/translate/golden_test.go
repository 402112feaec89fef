package translate_test

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

var update = flag.Bool("update", false, "rewrite the golden *.out.yaml files")

// TestGolden translates every testdata/*.in.yaml and compares the result
// with its *.out.yaml. Regenerate with `go test ./istiod-lite/translate -update`
// and review the diff: the goldens are the specification.
func TestGolden(t *testing.T) {
	ins, err := filepath.Glob("testdata/*.in.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) < 40 {
		t.Errorf("only %d golden cases; the translator needs at least 40", len(ins))
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := file.Parse(in, data)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			got, err := translate.Translate(model.NewIndex(snap)).YAML()
			if err != nil {
				t.Fatal(err)
			}
			// A second translation of the same input must be identical.
			snap2, _ := file.Parse(in, data)
			again, _ := translate.Translate(model.NewIndex(snap2)).YAML()
			if !bytes.Equal(got, again) {
				t.Fatal("translation is not deterministic")
			}
			out := strings.TrimSuffix(in, ".in.yaml") + ".out.yaml"
			if *update {
				if err := os.WriteFile(out, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run with -update and review the diff):\n%s", out, diff(string(want), string(got)))
			}
		})
	}
}

// diff shows the first differing lines.
func diff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	shown := 0
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, c string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			c = g[i]
		}
		if a != c {
			fmt.Fprintf(&b, "line %d:\n  want: %s\n  got:  %s\n", i+1, a, c)
			if shown++; shown > 8 {
				break
			}
		}
	}
	return b.String()
}
