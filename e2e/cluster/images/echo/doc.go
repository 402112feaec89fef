// Command echo is the local cluster's test application. It answers HTTP on
// -http (default :8080) with who it is — the pod name, namespace, node and
// pod IP (from the downward API env POD_NAME, POD_NAMESPACE, NODE_NAME,
// POD_IP; the host name when unset) — plus what it saw of the request, and
// echoes TCP on -tcp (default :9000) after a one-line greeting naming the pod.
// GET /lookup?name=<host> resolves a name as any program in the pod does
// (its resolv.conf: cluster DNS, search list) and answers the addresses as
// JSON, or 502 with the error.
// Tests assert the answering backend with it, so a response from anything
// else (a default gateway answering 404) never passes for success.
package main
