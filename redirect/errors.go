package redirect

import (
	"errors"
	"fmt"
)

// ErrNotSupported is returned (wrapped in a *NotSupportedError) when the
// kernel, the process's capabilities or the cgroup setup lack something
// capture needs. Callers refuse to run rather than pass traffic in
// plaintext.
var ErrNotSupported = errors.New("not supported")

// NotSupportedError names the missing feature.
type NotSupportedError struct {
	// Feature is what is missing, e.g. "cgroup v2 (no cgroup2 filesystem mounted)".
	Feature string
	// Err is the underlying cause, if any.
	Err error
}

func (e *NotSupportedError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("redirect: not supported: %s: %v", e.Feature, e.Err)
	}
	return "redirect: not supported: " + e.Feature
}

// Is makes errors.Is(err, ErrNotSupported) true.
func (e *NotSupportedError) Is(target error) bool { return target == ErrNotSupported }

// Unwrap returns the cause.
func (e *NotSupportedError) Unwrap() error { return e.Err }

// NotSupported returns a *NotSupportedError for feature.
func NotSupported(feature string, cause error) error {
	return &NotSupportedError{Feature: feature, Err: cause}
}
