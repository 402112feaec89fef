package redirect

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestNotSupported(t *testing.T) {
	cause := errors.New("operation not permitted")
	err := fmt.Errorf("loader: %w", NotSupported("CAP_BPF", cause))
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("errors.Is(%v, ErrNotSupported) = false", err)
	}
	if !errors.Is(err, cause) {
		t.Fatalf("cause lost: %v", err)
	}
	var nse *NotSupportedError
	if !errors.As(err, &nse) || nse.Feature != "CAP_BPF" {
		t.Fatalf("errors.As: %v", err)
	}
	if !strings.Contains(err.Error(), "not supported: CAP_BPF: operation not permitted") {
		t.Fatalf("message %q does not name the feature", err)
	}
	if errors.Is(errors.New("other"), ErrNotSupported) {
		t.Fatal("unrelated error matches")
	}
}
