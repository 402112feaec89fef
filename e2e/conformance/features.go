package conformance

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"

	"sigs.k8s.io/gateway-api/pkg/features"
)

// ReadFeatures reads a features file (features.txt): one Gateway API feature
// name per line, blank lines and #-comments ignored. Every name must be a
// feature of sigs.k8s.io/gateway-api/pkg/features, and none may repeat.
func ReadFeatures(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("conformance: features: %w", err)
	}
	return parseFeatures(b, path)
}

func parseFeatures(b []byte, path string) ([]string, error) {
	known := features.SetsToNamesSet(features.AllFeatures)
	seen := map[string]bool{}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		name := strings.TrimSpace(line)
		switch {
		case name == "":
			continue
		case strings.ContainsAny(name, " \t,"):
			return nil, fmt.Errorf("conformance: %s:%d: %q: one feature name per line", path, n, name)
		case !known.Has(features.FeatureName(name)):
			return nil, fmt.Errorf("conformance: %s:%d: %q is not a Gateway API feature", path, n, name)
		case seen[name]:
			return nil, fmt.Errorf("conformance: %s:%d: %q listed twice", path, n, name)
		}
		seen[name] = true
		out = append(out, name)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("conformance: %s: no features", path)
	}
	return out, nil
}
