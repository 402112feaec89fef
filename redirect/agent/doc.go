// Package agent is Warren's node agent: it decides which pods of its node
// are captured (namespace label warren.io/dataplane-mode=ambient, pod
// opt-out =none, exclusion annotations), finds their network namespaces
// (reported by the CNI plugin, or found in /proc for pods that were
// already running), converges the kernel's capture on that set through a
// loader.Dataplane with an idempotent full-state Set, and hands the pods,
// with their namespaces, to ztunnel over redirect/nodeproto.
//
// Agent is the reconciler (Set); Controller feeds it from Kubernetes
// (Watch, informers) and the CNI plugin (it is the cni.Service).
// DesiredPods is the pure enrolment rule. The package never logs (errors
// go to the caller or to ControllerOptions.OnError) and never imports
// istiod-lite, ztunnel or waypoint internals.
package agent
