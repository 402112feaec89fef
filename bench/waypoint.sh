#!/usr/bin/env bash
# waypoint.sh: the waypoint's L7 engine on a plaintext listener side by
# side with NGINX and HAProxy, same host, same 100-route table (path and
# header matches, generated once and translated by istiod-lite), same two
# backends; HTTP/1.1 keep-alive (wrk) and h2c (h2load) at 64 connections.
# Each proxy is pinned to CPU 0 and the load generator and backends to
# CPU 1 (taskset, when there are 2+ CPUs); rounds interleave the proxies so
# a shared machine's load spreads over all of them. Access logs are off in
# all three; the waypoint keeps its Prometheus metrics on.
#
#   bench/waypoint.sh                      3 rounds of 10 s per proxy and protocol
#   ROUNDS=5 DURATION=20 bench/waypoint.sh
#
# Output: bench/out/waypoint/{results.tsv,summary.txt}.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
export GOTOOLCHAIN=local GOFLAGS=-buildvcs=false
out=$top/bench/out/waypoint
run=$out/run
rounds=${ROUNDS:-3}
dur=${DURATION:-10}
conns=64
streams=${H2_STREAMS:-10}
for t in nginx haproxy wrk h2load; do
  command -v "$t" >/dev/null || { echo "waypoint bench: $t missing (hack/deps.sh bench installs it)" >&2; exit 1; }
done
rm -rf "$run"; mkdir -p "$run/nginx-tmp" "$run/backend-tmp"
chmod 777 "$run/nginx-tmp" "$run/backend-tmp"

ulimit -n 65536 2>/dev/null || true
proxy_cpu=""; load_cpu=""
if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
  proxy_cpu="taskset -c 0"; load_cpu="taskset -c 1"
fi

wp_addr=127.0.0.1:18080
go build -o "$run/waypoint-bench" ./bench/waypoint
"$run/waypoint-bench" gen -out "$out" -routes 100 -backends 127.0.0.2:18081,127.0.0.3:18082 \
  -nginx-listen 127.0.0.1:18090 -haproxy-listen 127.0.0.1:18091 -h2-port-offset 10
sed -i "s#PREFIX#$run#g" "$out/nginx.conf"

# The two backends: one small NGINX answering 200 with a short body.
cat > "$run/backend.conf" <<CONF
worker_processes 1;
daemon off;
pid $run/backend.pid;
error_log $run/backend-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $run/backend-tmp;
  proxy_temp_path $run/backend-tmp;
  fastcgi_temp_path $run/backend-tmp;
  uwsgi_temp_path $run/backend-tmp;
  scgi_temp_path $run/backend-tmp;
  keepalive_requests 1000000;
  server { listen 127.0.0.2:18081; location / { return 200 "hello from backend 0\n"; } }
  server { listen 127.0.0.3:18082; location / { return 200 "hello from backend 1\n"; } }
}
CONF

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
$load_cpu nginx -p "$run" -c "$run/backend.conf" >/dev/null 2>&1 & pids+=($!)

wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; return 1; }
wait_port 127.0.0.2:18081; wait_port 127.0.0.3:18082

# start_proxy NAME: starts it pinned, sets proxy_pid (the process whose tree we measure) and ports
start_proxy() {
  case "$1" in
    waypoint)
      $proxy_cpu "$run/waypoint-bench" serve -config "$out/mesh.yaml" -listen $wp_addr & proxy_pid=$!
      h1=$wp_addr; h2=$wp_addr ;;
    nginx)
      $proxy_cpu nginx -p "$run" -c "$out/nginx.conf" >/dev/null 2>&1 & proxy_pid=$!
      h1=127.0.0.1:18090; h2=127.0.0.1:18100 ;;
    haproxy)
      $proxy_cpu haproxy -db -f "$out/haproxy.cfg" >/dev/null 2>&1 & proxy_pid=$!
      h1=127.0.0.1:18091; h2=127.0.0.1:18101 ;;
  esac
  wait_port "$h1"; wait_port "$h2"
}
stop_proxy() { kill "$proxy_pid" 2>/dev/null || true; wait "$proxy_pid" 2>/dev/null || true; sleep 0.3; }

# tree PID: the process and its children (NGINX workers)
tree() { echo "$1"; pgrep -P "$1" || true; }
# ticks PID: user+system CPU ticks of the tree
ticks() { local s=0; for p in $(tree "$1"); do [ -r "/proc/$p/stat" ] && s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $s; }
# rss PID: resident KiB of the tree
rss() { local s=0; for p in $(tree "$1"); do [ -r "/proc/$p/status" ] && s=$((s + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status"))); done; echo $s; }
hz=$(getconf CLK_TCK)

path=/svc98/item; hdr="x-route: r98"
check() {
  local code
  code=$(curl -s -o /dev/null -w '%{http_code}' -H "$hdr" "http://$1$path")
  [ "$code" = 200 ] || { echo "waypoint bench: $2 answered $code for the routed request" >&2; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://$1$path")
  [ "$code" = 404 ] || { echo "waypoint bench: $2 answered $code without the header (want 404)" >&2; exit 1; }
  code=$(curl -s -o /dev/null -w '%{http_code}' --http2-prior-knowledge -H "$hdr" "http://$3$path")
  [ "$code" = 200 ] || { echo "waypoint bench: $2 h2c answered $code" >&2; exit 1; }
}

results=$out/results.tsv
printf 'round\tproxy\tproto\tcpu_s_per_1k\trps\tp99_ms\trss_mb\n' > "$results"
for round in $(seq "$rounds"); do
  for proxy in waypoint nginx haproxy; do
    start_proxy $proxy
    command -v curl >/dev/null && check "$h1" $proxy "$h2"
    # HTTP/1.1 keep-alive, 64 connections (2 s warm-up first).
    $load_cpu wrk -t1 -c$conns -d2s -H "$hdr" "http://$h1$path" >/dev/null
    t0=$(ticks "$proxy_pid")
    $load_cpu wrk -t1 -c$conns -d${dur}s --latency -H "$hdr" "http://$h1$path" > "$run/wrk.txt"
    t1=$(ticks "$proxy_pid")
    awk -v r="$round" -v p="$proxy" -v t="$((t1 - t0))" -v hz="$hz" -v rss="$(rss "$proxy_pid")" '
      function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
      /requests in/ {n=$1} /Requests\/sec/ {rps=$2} $1=="99%" {p99=ms($2)}
      /Non-2xx/ {bad=$NF}
      END { if (bad > 0) { print "non-2xx answers: " bad > "/dev/stderr"; exit 1 }
            printf "%s\t%s\thttp1\t%.4f\t%.0f\t%.2f\t%.1f\n", r, p, t/hz/(n/1000), rps, p99, rss/1024 }' "$run/wrk.txt" >> "$results"
    # h2c prior knowledge, 64 connections x $streams streams.
    $load_cpu h2load -c$conns -m"$streams" -t1 -D2 -H "$hdr" "http://$h2$path" >/dev/null
    t0=$(ticks "$proxy_pid")
    $load_cpu h2load -c$conns -m"$streams" -t1 -D"$dur" -H "$hdr" --log-file="$run/h2.log" "http://$h2$path" > "$run/h2load.txt"
    t1=$(ticks "$proxy_pid")
    n=$(awk '/^requests:/ {print $8}' "$run/h2load.txt")
    rps=$(awk '/^finished in/ {gsub(",", "", $4); print $4}' "$run/h2load.txt")
    bad=$(awk '/^status codes:/ {gsub(",", "", $5); print $5+$7+$9}' "$run/h2load.txt")
    [ "${bad:-0}" = 0 ] || { echo "waypoint bench: $proxy h2c non-2xx answers: $bad" >&2; exit 1; }
    p99=$(awk '{print $3}' "$run/h2.log" | sort -n | awk '{a[NR]=$1} END {i=int(NR*0.99); if (i<1) i=1; printf "%.2f", a[i]/1000}')
    awk -v r="$round" -v p="$proxy" -v rps="$rps" -v p99="$p99" -v n="$n" -v t="$((t1 - t0))" -v hz="$hz" -v rss="$(rss "$proxy_pid")" 'BEGIN {
      printf "%s\t%s\th2c\t%.4f\t%.0f\t%.2f\t%.1f\n", r, p, t/hz/(n/1000), rps, p99, rss/1024 }' >> "$results"
    stop_proxy
  done
done

# Medians over rounds, then the ratios.
{
  echo "== waypoint L7 engine vs NGINX and HAProxy: medians of $rounds rounds x ${dur}s, $conns connections"
  echo "   ($(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); load average $(cut -d' ' -f1-3 /proc/loadavg); ${proxy_cpu:-no pinning})"
  printf '%-9s %-6s %15s %10s %9s %8s\n' proxy proto cpu_s/1k_req rps p99_ms rss_MB
  awk -F'\t' 'NR > 1 {k=$2"\t"$3; v[k, ++c[k]] = $4"\t"$5"\t"$6"\t"$7}
    END { for (k in c) { n=c[k]; for (f=1; f<=4; f++) {
            for (i=1; i<=n; i++) { split(v[k,i], x, "\t"); a[i]=x[f]+0 }
            for (i=2; i<=n; i++) { y=a[i]; for (j=i-1; j>=1 && a[j]>y; j--) a[j+1]=a[j]; a[j+1]=y }
            m[f] = (n%2) ? a[(n+1)/2] : (a[n/2]+a[n/2+1])/2 }
          printf "%s\t%s\t%s\t%s\t%s\n", k, m[1], m[2], m[3], m[4] } }' "$results" | sort -k2,2 -k1,1 > "$out/medians.tsv"
  awk -F'\t' '{printf "%-9s %-6s %15.4f %10.0f %9.2f %8.1f\n", $1, $2, $3, $4, $5, $6}' "$out/medians.tsv"
  for proto in http1 h2c; do
    awk -F'\t' -v pr="$proto" '$2 == pr {cpu[$1]=$3; rps[$1]=$4; p99[$1]=$5}
      END { best = (rps["nginx"] > rps["haproxy"]) ? "nginx" : "haproxy"
            printf "%s: waypoint CPU per 1k requests %.2fx NGINX (goal <= 1.0), %.2fx HAProxy; rps %.2fx the faster peer (%s; goal >= 1.0); p99 %.2fx its p99 (goal <= 1.2)\n",
              pr, cpu["waypoint"]/cpu["nginx"], cpu["waypoint"]/cpu["haproxy"], rps["waypoint"]/rps[best], best, p99["waypoint"]/p99[best] }' "$out/medians.tsv"
  done
} | tee "$out/summary.txt"
