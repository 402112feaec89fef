// Package bpf holds Warren's capture programs: the C source in c/capture.c
// and the objects and Go bindings bpf2go generates from it (capture_bpfel.o
// and capture_bpfel.go, committed; `make generate` rebuilds them, so
// building and testing need no clang).
//
// It owns the kernel ABI: program and map names, the layout of map keys and
// values, flag bits and statistics indexes. It must not load, attach or pin
// anything — that is redirect/loader's job — and it never imports another
// Warren package.
package bpf
