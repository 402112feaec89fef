// Package cni is Warren's chained CNI plugin and its line to the node
// agent. The plugin (run by cmd/warren-cni after the network plugins of a
// pod's sandbox) asks the agent, over a unix socket, to capture the new pod
// before any of its containers start; if the agent is unreachable the
// sandbox fails with a clear message unless the configuration says
// failOpen. The result of the previous plugin passes through unchanged.
//
// The package owns the plugin configuration, the request/response types
// and both ends of the agent socket (Client for the plugin, Server for the
// agent, which supplies a Service). It does not decide enrolment (the
// agent does) and never logs.
package cni
