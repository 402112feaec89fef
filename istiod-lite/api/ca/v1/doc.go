// Package cav1 is the generated code of warren.ca.v1 (ca.proto): the
// CertificateService that signs workload certificates. Regenerate with
// `make generate`; do not edit the .pb.go files by hand.
package cav1
