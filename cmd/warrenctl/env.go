package main

import (
	"io"
	"time"
)

// env is what commands share: output streams, the clock, the global
// flags and lazily built clients. Tests set kubeOverride and friends.
type env struct {
	stdout, stderr io.Writer
	now            func() time.Time
	flags          globalFlags

	// kubeOverride, when set, replaces clients built from the kubeconfig.
	kubeOverride *kubeClients
	kubeCache    *kubeClients
}

// globalFlags are the persistent flags of the root command.
type globalFlags struct {
	kubeconfig string
	context    string
	namespace  string
	// istiodAddr reaches istiod-lite's monitoring port directly; empty
	// means through the API server's service proxy.
	istiodAddr      string
	systemNamespace string
	istiodService   string
	ztunnelSelector string
	timeout         time.Duration
}

// Defaults of the global flags.
const (
	defaultSystemNamespace = "warren-system"
	defaultIstiodService   = "istiod-lite"
	defaultZtunnelSelector = "app=ztunnel"
	istiodMonitoringPort   = "15014"
)
