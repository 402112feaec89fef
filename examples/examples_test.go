package examples_test

import (
	"io/fs"
	"testing"

	"github.com/warren-mesh/warren/examples"
	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// TestExamplesTranslateCleanly checks the embedded default config parses,
// translates with no diagnostics, and carries the 90/10 split.
func TestExamplesTranslateCleanly(t *testing.T) {
	snap, err := file.LoadFS(examples.FS(), ".")
	if err != nil {
		t.Fatal(err)
	}
	out := translate.Translate(model.NewIndex(snap))
	if len(out.Diagnostics) > 0 {
		t.Fatalf("diagnostics: %+v", out.Diagnostics)
	}
	l7 := out.L7Services["server/echo.server.svc.cluster.local"]
	if l7 == nil || len(l7.Ports) != 1 || l7.Ports[0].Producer == nil {
		t.Fatalf("no route table for echo: %+v", l7)
	}
	bs := l7.Ports[0].Producer.Routes[0].Backends
	if len(bs) != 2 || bs[0].Weight != 90 || bs[1].Weight != 10 {
		t.Fatalf("split = %+v", bs)
	}
	for key, st := range out.Status.HTTPRoutes {
		for _, p := range st {
			for _, c := range p.Conditions {
				if c.Status != "True" {
					t.Errorf("%s: condition %s is %s: %s", key, c.Type, c.Status, c.Message)
				}
			}
		}
	}
	if _, err := fs.ReadFile(examples.FS(), "mesh.yaml"); err != nil {
		t.Fatal(err)
	}
}
