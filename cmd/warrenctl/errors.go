package main

import (
	"errors"
	"fmt"
	"strings"
)

// Exit codes.
const (
	exitFailure  = 1
	exitUsage    = 2
	exitFindings = 3
)

// usageError is a mistake on the command line (exit code 2).
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// exitError ends the command with a code and, when msg is set, a line.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// classify maps an error to the exit code and the one line to print.
// Cobra's own errors (unknown command, unknown flag, wrong arguments)
// are usage errors.
func classify(err error) (int, string) {
	msg := oneLine(err.Error())
	var ue *usageError
	var ee *exitError
	switch {
	case errors.As(err, &ee):
		return ee.code, oneLine(ee.msg)
	case errors.As(err, &ue):
		return exitUsage, msg
	case strings.HasPrefix(msg, "unknown command "), strings.HasPrefix(msg, "unknown flag"),
		strings.HasPrefix(msg, "unknown shorthand flag"), strings.HasPrefix(msg, "required flag"),
		strings.HasPrefix(msg, "flag needs an argument"), strings.HasPrefix(msg, "invalid argument "),
		strings.HasPrefix(msg, "accepts "), strings.HasPrefix(msg, "requires "):
		return exitUsage, msg
	}
	return exitFailure, msg
}

// oneLine folds a multi-line message into one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == '\n' || r == '\r' })
	for i := range parts {
		parts[i] = strings.TrimSpace(parts[i])
	}
	return strings.Join(parts, "; ")
}
