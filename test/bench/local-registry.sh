#!/usr/bin/env bash
# local-registry.sh start|stop|status
#
# Runs Debian's docker-registry on 127.0.0.1 for the benchmarks and pushes
# the images they need (test/bench/pushimages: busybox and a pause stand-in,
# both built from Debian's busybox-static), because nothing can be pulled
# from the internet on the benchmark machines. Idempotent: "start" on a
# running registry only re-pushes (blobs already there are skipped).
#
# Environment:
#   CRI_BENCH_REGISTRY_PORT  port on 127.0.0.1 (default 5055)
#   CRI_BENCH_REGISTRY_DIR   config, storage and log (default /var/lib/cri-bench-registry)
#   CRI_BENCH_SCALE_IMAGES   also push this many images library/scale:000... (cri-bench --scale)
set -euo pipefail

PORT=${CRI_BENCH_REGISTRY_PORT:-5055}
DIR=${CRI_BENCH_REGISTRY_DIR:-/var/lib/cri-bench-registry}
PIDFILE=$DIR/registry.pid
URL=http://127.0.0.1:$PORT
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

die() { echo "local-registry: $*" >&2; exit 1; }

running() {
	[[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null
}

ready() { curl -fsS -o /dev/null "$URL/v2/" 2>/dev/null; }

install_deps() {
	local missing=()
	for p in docker-registry busybox-static curl; do
		dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
	done
	if ((${#missing[@]})); then
		echo "local-registry: installing ${missing[*]}" >&2
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
	fi
}

start() {
	[[ $(id -u) == 0 ]] || die "run as root"
	install_deps
	if ! running; then
		mkdir -p "$DIR/data"
		# The registry's own log level is warn: the access log of a
		# benchmark's pulls is noise.
		cat >"$DIR/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $DIR/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
EOF
		if ready; then
			die "something else already answers on $URL; pick another CRI_BENCH_REGISTRY_PORT"
		fi
		# setsid: the registry must outlive this script and not get the
		# terminal's Ctrl-C.
		setsid /usr/bin/docker-registry serve "$DIR/config.yml" >>"$DIR/registry.log" 2>&1 </dev/null &
		echo $! >"$PIDFILE"
	fi
	for _ in $(seq 100); do
		ready && break
		running || die "docker-registry exited; log: $(tail -5 "$DIR/registry.log")"
		sleep 0.1
	done
	ready || die "docker-registry not answering on $URL"
	(cd "$REPO" && go run -tags e2e ./test/bench/pushimages --registry "$URL" --scale-images "${CRI_BENCH_SCALE_IMAGES:-0}") >&2
	echo "$URL"
}

stop() {
	if running; then
		local pid
		pid=$(cat "$PIDFILE")
		kill "$pid"
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
	fi
	rm -rf "$DIR"
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) if running && ready; then echo "$URL"; else exit 1; fi ;;
*) die "usage: $0 start|stop|status" ;;
esac
