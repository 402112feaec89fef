// Command warrenctl is Warren's debugging CLI: it answers "why did this
// request go where it went" from the control plane's debug endpoints
// (istiod-lite :15014), the API server and, offline, a directory of YAML
// run through the same pure translation istiod-lite uses.
//
// Everything lives in package main: the repository's dependency rule
// (arch_test.go) forbids importing any package under cmd/, so the pure
// parts (trace prediction, analyzers, describe, printers) are files of
// their own here, free of cobra and I/O, each with table tests.
//
// Errors are one line on stderr prefixed "warrenctl:"; exit codes are 1
// for failures, 2 for usage errors, 3 when analyze finds problems at or
// above --fail-on.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// version is stamped by the build (-X main.version=...).
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr, nil))
}

// run executes one command line and returns the exit code. env may be
// nil (the real one is built from the flags); tests pass fakes.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, e *env) int {
	if e == nil {
		e = &env{}
	}
	e.stdout, e.stderr = stdout, stderr
	if e.now == nil {
		e.now = time.Now
	}
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	code, msg := classify(err)
	if msg != "" {
		fmt.Fprintln(stderr, "warrenctl: "+msg)
	}
	return code
}
