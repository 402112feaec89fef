package kubetest

import (
	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
)

// envtest logs through controller-runtime's logger, which complains with a
// stack trace in every failing test's output when none is set.
func init() { ctrllog.SetLogger(logr.Discard()) }
