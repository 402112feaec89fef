package translate_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/warren-mesh/warren/istiod-lite/model"
	"github.com/warren-mesh/warren/istiod-lite/source/file"
	"github.com/warren-mesh/warren/istiod-lite/translate"
)

// FuzzParseTranslate feeds arbitrary YAML through the file source and the
// translator: either the parser reports an error, or translation succeeds
// and renders; nothing panics, and translation is deterministic.
func FuzzParseTranslate(f *testing.F) {
	for _, name := range []string{"consumer-and-producer", "gateway-parent-rejections", "authz-invalid", "grpcroute-matching", "backend-traffic-policy"} {
		data, err := os.ReadFile(filepath.Join("testdata", name+".in.yaml"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 99999}], clusterIP: nonsense}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		snap, err := file.Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		a, err := translate.Translate(model.NewIndex(snap)).YAML()
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		snap2, _ := file.Parse("fuzz.yaml", data)
		b, _ := translate.Translate(model.NewIndex(snap2)).YAML()
		if string(a) != string(b) {
			t.Fatal("non-deterministic translation")
		}
	})
}
