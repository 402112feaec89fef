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

# ---- HBONE (issue 5): ztunnel/hbone vs direct TCP and net/http's HTTP/2 ----
# Default GOMAXPROCS: the HBONE path is a pipeline (client writer, server
# read loop, splice) that uses both cores. cpu-ns/op is this process's CPU
# time per operation (both ends and the app run in it).
echo
echo "== HBONE: ztunnel/hbone, $count samples each"
go test -run '^$' -bench . -benchmem -count "$count" ./ztunnel/hbone/ | tee "$out/hbone.txt"

# hmed BENCH UNIT: median of the value reported with UNIT for BENCH
hmed() {
  awk -v b="$1" -v u="$2" '$1 ~ "^"b"(-[0-9]+)?$" {for (i = 3; i <= NF; i++) if ($i == u) print $(i-1)}' "$out/hbone.txt" | sort -g |
    awk '{a[NR]=$1} END {if (NR==0) {print "NaN"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'
}
t_tcp=$(hmed BenchmarkThroughput/tcp MB/s); t_hb=$(hmed BenchmarkThroughput/hbone MB/s); t_std=$(hmed BenchmarkThroughput/nethttp MB/s)
c_tcp=$(hmed BenchmarkThroughput/tcp cpu-ns/op); c_hb=$(hmed BenchmarkThroughput/hbone cpu-ns/op); c_std=$(hmed BenchmarkThroughput/nethttp cpu-ns/op)
f_tcp=$(hmed BenchmarkFirstByte/tcp ns/op); f_warm=$(hmed BenchmarkFirstByte/hbone-warm ns/op)
f_cold=$(hmed BenchmarkFirstByte/hbone-cold ns/op); f_std=$(hmed BenchmarkFirstByte/nethttp-warm ns/op)
r_tcp=$(hmed BenchmarkRR64/tcp req/s); r_hb=$(hmed BenchmarkRR64/hbone req/s); r_std=$(hmed BenchmarkRR64/nethttp req/s)
rc_tcp=$(hmed BenchmarkRR64/tcp cpu-ns/op); rc_hb=$(hmed BenchmarkRR64/hbone cpu-ns/op)
idle=$(hmed BenchmarkIdleStreams B/idle-stream)
echo
echo "== HBONE summary (medians; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
awk -v tt="$t_tcp" -v th="$t_hb" -v ts="$t_std" -v ct="$c_tcp" -v ch="$c_hb" -v cs="$c_std" \
    -v ft="$f_tcp" -v fw="$f_warm" -v fc="$f_cold" -v fs="$f_std" \
    -v rt="$r_tcp" -v rh="$r_hb" -v rs="$r_std" -v rct="$rc_tcp" -v rch="$rc_hb" -v id="$idle" 'BEGIN {
  printf "single stream: tcp %.0f MB/s, hbone %.0f MB/s (%.2fx tcp; goal >= 0.6x), net/http h2 %.0f MB/s\n", tt, th, th/tt, ts
  printf "  CPU per 64 KiB: tcp %.0f µs, hbone %.0f µs (%.2fx), net/http h2 %.0f µs\n", ct/1e3, ch/1e3, ch/ct, cs/1e3
  printf "first byte: tcp %.0f µs, hbone warm %.0f µs (+%.0f µs; goal <= +200), cold %.0f µs, net/http h2 warm %.0f µs\n", ft/1e3, fw/1e3, (fw-ft)/1e3, fc/1e3, fs/1e3
  printf "1 KiB req/resp, 64 streams: tcp %.0f/s, hbone %.0f/s (%.2fx), net/http h2 %.0f/s; CPU per exchange %.0f vs %.0f µs\n", rt, rh, rh/rt, rs, rct/1e3, rch/1e3
  printf "memory per idle stream (both ends + handler goroutine): %.0f B\n", id
}' | tee "$out/hbone-summary.txt"

# ---- redirect (issue 6): eBPF capture cost, enrol latency (root) ----
echo
echo "== redirect: eBPF capture (root), $count samples each"
if [ "$(id -u)" != 0 ]; then
  echo "redirect: skipped (needs root: network namespaces, cgroups, BPF)" | tee "$out/redirect-summary.txt"
else
  : > "$out/redirect.txt"
  rb() { go test -run '^$' -bench "$1" -benchtime "$2" -count "$count" "$3" | tee -a "$out/redirect.txt"; }
  rb '^BenchmarkConnect$' 20000x ./redirect/loader/
  rb '^BenchmarkGetsockoptTax$' 200000x ./redirect/loader/
  rb '^BenchmarkOrigDstLookup$' 200000x ./redirect/loader/
  rb '^BenchmarkEnrolKernel$' 200x ./redirect/loader/
  rb '^BenchmarkEnrol$' 100x ./redirect/agent/
  rb '^BenchmarkCNIAdd$' 100x ./redirect/agent/
  # rmed BENCH UNIT: median over samples of the metric reported in UNIT
  rmed() {
    awk -v b="$1" -v u="$2" '$1 ~ "^"b"(-[0-9]+)?$" { for (i = 3; i <= NF; i++) if ($i == u) print $(i-1) }' "$out/redirect.txt" | sort -n |
      awk '{a[NR]=$1} END {if (NR==0) {print "NaN"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'
  }
  cb=$(rmed BenchmarkConnect ns/connect-base); cg=$(rmed BenchmarkConnect ns/connect-gated)
  cl=$(rmed BenchmarkConnect ns/connect-enrolled-local); cc=$(rmed BenchmarkConnect ns/connect-captured)
  gb=$(rmed BenchmarkGetsockoptTax ns/getsockopt-base); gp=$(rmed BenchmarkGetsockoptTax ns/getsockopt-with-program)
  lg=$(rmed BenchmarkOrigDstLookup ns/lookup-getsockopt); lm=$(rmed BenchmarkOrigDstLookup ns/lookup-map)
  ke=$(rmed BenchmarkEnrolKernel ns/enrol); kr=$(rmed BenchmarkEnrolKernel ns/release)
  ae=$(rmed BenchmarkEnrol ns/enrol); ar=$(rmed BenchmarkEnrol ns/release); ca=$(rmed BenchmarkCNIAdd ns/cni-add)
  echo
  echo "== redirect summary (medians; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
  awk -v cb="$cb" -v cg="$cg" -v cl="$cl" -v cc="$cc" -v gb="$gb" -v gp="$gp" -v lg="$lg" -v lm="$lm" \
      -v ke="$ke" -v kr="$kr" -v ae="$ae" -v ar="$ar" -v ca="$ca" 'BEGIN {
    printf "connect cycle, no programs:                      %7.1f µs\n", cb/1e3
    printf "  programs attached, pod not enrolled:           %7.1f µs  (%.2fx)\n", cg/1e3, cg/cb
    printf "  enrolled pod, loopback (not captured):         %7.1f µs  (%.2fx)\n", cl/1e3, cl/cb
    printf "  enrolled pod, captured to 15001:               %7.1f µs  (%.2fx)\n", cc/1e3, cc/cb
    printf "CPU at 10,000 captured connects/s (derived):     %7.2f%% of one core more than without capture\n", (cc-cb)*1e4/1e9*100
    printf "getsockopt(SO_ERROR): %.0f ns, under the getsockopt program %.0f ns (%.2fx)\n", gb, gp, gp/gb
    printf "original destination: getsockopt %.0f ns, map lookup %.0f ns (%.2fx)\n", lg, lm, lm/lg
    printf "enrol, kernel side: %.2f ms (release %.3f ms)\n", ke/1e6, kr/1e6
    printf "label change -> capture on (agent, ztunnel handover): %.2f ms (release %.2f ms)\n", ae/1e6, ar/1e6
    printf "CNI ADD in an enrolled namespace: %.2f ms\n", ca/1e6
  }' | tee "$out/redirect-summary.txt"
fi

# ---- xDS (issue 4): one Workload change reaching 100 delta-xDS clients ----
# The xDS server and 100 clients (each its own gRPC connection over
# loopback) share this machine's cores in one process. Latency runs from
# Server.Update to the client's Handler, including the default 20 ms
# debounce window and the client's decode; 200 changes per sample.
echo
echo "== xDS: one Workload change -> 100 connected clients, $count samples of 200 changes"
go test -run '^$' -bench '^BenchmarkPropagation100Clients$' -benchtime 200x -count "$count" ./istiod-lite/xds/ | tee "$out/xds.txt"
# xmed UNIT: median over samples of the metric reported in UNIT
xmed() {
  awk -v u="$1" '$1 ~ /^BenchmarkPropagation100Clients(-[0-9]+)?$/ { for (i = 3; i <= NF; i++) if ($i == u) print $(i-1) }' "$out/xds.txt" | sort -g |
    awk '{a[NR]=$1} END {if (NR==0) {print "NaN"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'
}
x50=$(xmed p50-ms); x99=$(xmed p99-ms); xmax=$(xmed max-ms); xbytes=$(xmed bytes/push); xpush=$(xmed pushes/change); xfull=$(xmed full-state-bytes)
echo
echo "== xDS summary (medians of $count samples; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
awk -v a="$x50" -v b="$x99" -v m="$xmax" -v by="$xbytes" -v pu="$xpush" -v f="$xfull" 'BEGIN {
  printf "one Workload change -> 100 clients: p50 %.1f ms, p99 %.1f ms (goal < 100 ms incl. the 20 ms debounce), max %.1f ms\n", a, b, m
  printf "pushes per change: %.0f (one per client); bytes per push: %.0f (one resource)\n", pu, by
  printf "for scale: the 1000 Workloads as one state-of-the-world push: %.0f bytes (%.0fx)\n", f, f/by
}' | tee "$out/xds-summary.txt"

# ---- translation (issue 4): 10k pods / 2k Services / 2k HTTPRoutes ----
echo
echo "== translate: full and incremental, $count samples each"
go test -run '^$' -bench 'TranslateFull|Incremental' -benchmem -count "$count" ./istiod-lite/translate/ | tee "$out/translate.txt"
tmed() {
  awk -v b="$1" '$1 ~ "^"b"(-[0-9]+)?$" {print $3}' "$out/translate.txt" | sort -g |
    awk '{a[NR]=$1} END {if (NR==0) {print "NaN"} else if (NR%2) {print a[(NR+1)/2]} else {print (a[NR/2]+a[NR/2+1])/2}}'
}
tf=$(tmed BenchmarkTranslateFull); tp=$(tmed BenchmarkIncrementalPod); tr=$(tmed BenchmarkIncrementalRoute)
heap=$(go test -run TestTranslateScale -v ./istiod-lite/translate/ | sed -n 's/.*heap \([0-9]*\) MB.*/\1/p')
echo
echo "== translate summary (medians)"
awk -v f="$tf" -v p="$tp" -v r="$tr" -v h="$heap" 'BEGIN {
  printf "full translation, 10k pods/2k services/2k routes: %.0f ms (goal < 1000 ms), heap after %s MB (goal < 500 MB)\n", f/1e6, h
  printf "one pod change (incremental):   %.1f ms\n", p/1e6
  printf "one route change (incremental): %.1f ms\n", r/1e6
}' | tee "$out/translate-summary.txt"

# ---- waypoint L7 engine (issue 8): plaintext listener vs NGINX and HAProxy ----
# Same 100-route table (translated once; NGINX and HAProxy configs are
# generated from the translated table), same two backends, HTTP/1.1
# keep-alive (wrk) and h2c (h2load) at 64 connections, proxies pinned to
# CPU 0 and load + backends to CPU 1. Rounds interleave the three proxies.
echo
echo "== waypoint L7 engine vs NGINX / HAProxy (ROUNDS=${WAYPOINT_ROUNDS:-3}, ${WAYPOINT_DURATION:-10}s each)"
ROUNDS=${WAYPOINT_ROUNDS:-3} DURATION=${WAYPOINT_DURATION:-10} bench/waypoint.sh

# ---- waypoint full HBONE path (issue 8): cmd/waypoint's proxy vs the plaintext engine ----
# client → HBONE → waypoint (child process, its CPU measured alone) → HBONE
# → stand-in ztunnel → backend, against client → TCP → engine → TCP →
# backend; same table, same backends, 64 keep-alive clients, alternating.
echo
echo "== waypoint: full HBONE path vs plaintext engine, $count samples each"
go test -run '^$' -bench '^BenchmarkFullPath$' -benchtime 20000x -count "$count" ./waypoint/proxy/ | tee "$out/waypoint-hbone.txt"
