#!/usr/bin/env bash
# run.sh: Warren's benchmarks, side by side in one run, with the ratios that
# go into BENCHMARKS.md. Raw `go test -bench` output lands in bench/out/.
#
#   bench/run.sh            all benchmarks
#   COUNT=10 bench/run.sh   more samples
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
out=bench/out; mkdir -p "$out"
count=${COUNT:-5}

echo "== certs + CA (one core: -cpu 1), $count samples each"
go test -run '^$' -bench . -benchmem -cpu 1 -count "$count" ./certs/ ./istiod-lite/ca/ | tee "$out/certs.txt"

# median ns/op of one benchmark
med() {
  awk -v b="$1" '$1 ~ "^"b"(-[0-9]+)?$" {print $3}' "$out/certs.txt" | sort -n |
    awk '{a[NR]=$1} END {if (NR==0) {print "NaN"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'
}
sign=$(med BenchmarkSignCSR); svid=$(med BenchmarkNewSVID); grpc=$(med BenchmarkCreateCertificateGRPC)
hb=$(med BenchmarkHandshakeHBONE); plain=$(med BenchmarkHandshakePlain)
echo
echo "== summary (medians; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'))"
awk -v s="$sign" -v v="$svid" -v g="$grpc" -v h="$hb" -v p="$plain" 'BEGIN {
  printf "CA signing (CSR check + sign), one core:        %7.0f SVIDs/s  (%.0f µs each; goal >= 2000/s)\n", 1e9/s, s/1e3
  printf "key + CSR + sign in process, one core:          %7.0f SVIDs/s\n", 1e9/v
  printf "through gRPC/TLS on loopback (client+server):   %7.0f SVIDs/s  (%.0f µs each, both ends on one core)\n", 1e9/g, g/1e3
  printf "mutual TLS 1.3 handshake, HBONE config:         %7.0f µs\n", h/1e3
  printf "mutual TLS 1.3 handshake, plain tls.Config:     %7.0f µs\n", p/1e3
  printf "HBONE / plain handshake cost:                   %7.2fx\n", h/p
}' | tee "$out/summary.txt"
