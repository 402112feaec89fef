package certs

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// DefaultTrustDomain is the trust domain used when none is configured.
const DefaultTrustDomain = "cluster.local"

// WorkloadID returns spiffe://<td>/ns/<ns>/sa/<sa>.
func WorkloadID(td spiffeid.TrustDomain, namespace, serviceAccount string) (spiffeid.ID, error) {
	if namespace == "" || serviceAccount == "" {
		return spiffeid.ID{}, fmt.Errorf("certs: workload identity needs a namespace and a service account (got %q, %q)", namespace, serviceAccount)
	}
	id, err := spiffeid.FromSegments(td, "ns", namespace, "sa", serviceAccount)
	if err != nil {
		return spiffeid.ID{}, fmt.Errorf("certs: workload identity ns=%q sa=%q: %w", namespace, serviceAccount, err)
	}
	return id, nil
}

// ParseWorkloadID splits a workload identity into namespace and service
// account. It rejects IDs whose path is not exactly /ns/<ns>/sa/<sa>.
func ParseWorkloadID(id spiffeid.ID) (namespace, serviceAccount string, err error) {
	parts := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" || parts[1] == "" || parts[3] == "" {
		return "", "", fmt.Errorf("certs: %q is not a workload identity (want spiffe://<td>/ns/<ns>/sa/<sa>)", id)
	}
	return parts[1], parts[3], nil
}
