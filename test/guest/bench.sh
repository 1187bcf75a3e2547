#!/bin/bash
# bench.sh runs inside the guest (the full suite calls it): pod start
# latency with the systemd cgroup driver against the cgroupfs driver, same
# guest, same run. Two daemons (one per driver) serve at once; cri-bench
# (cmd/cri-bench) runs host-network pods through their lifecycle against
# each in turn, ROUNDS times, so that whatever else the machine does hits
# both alike. Images come from a registry inside the guest
# (test/bench/pushimages). Reports land in /mnt/out/bench-*.
set -eu
host=${GUEST_SHARE:-/mnt/host}
out=/mnt/out
work=/var/tmp/bench
pods=${BENCH_PODS:-10}
rounds=${BENCH_ROUNDS:-2}
port=5055
mkdir -p "$work/registry"

cat >"$work/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/registry/data
http:
  addr: 127.0.0.1:$port
EOF
/usr/bin/docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
registry=$!
pids=("$registry")
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 300); do
	busybox wget -q -O /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break
	sleep 0.1
done
"$host/pushimages" --registry "http://127.0.0.1:$port" >"$out/bench-push.log" 2>&1

for driver in systemd cgroupfs; do
	d=$work/$driver
	mkdir -p "$d/certs.d/docker.io" "$d/net.d"
	printf 'server = "http://127.0.0.1:%s"\n' "$port" >"$d/certs.d/docker.io/hosts.toml"
	cat >"$d/config.toml" <<EOF
root = "$d/root"
state = "/run/bench-$driver"
[grpc]
address = "/run/bench-$driver/cri-runtimed.sock"
[runtime]
cgroup_driver = "$driver"
[image]
registry_config_path = "$d/certs.d"
[cni]
conf_dir = "$d/net.d"
[nri]
# Each daemon its own: two on the default socket race for it, and the
# one that loses exits ("bind: address already in use").
socket_path = "/run/bench-$driver/nri.sock"
EOF
	"$host/src/bin/cri-runtimed" --config "$d/config.toml" >"$out/bench-daemon-$driver.log" 2>&1 &
	pids+=($!)
done
for driver in systemd cgroupfs; do
	for _ in $(seq 600); do
		[ -S "/run/bench-$driver/cri-runtimed.sock" ] && break
		sleep 0.1
	done
done

for round in $(seq "$rounds"); do
	for driver in systemd cgroupfs; do
		echo "bench: round $round, $driver driver, $pods pods"
		"$host/cri-bench" --endpoint "unix:///run/bench-$driver/cri-runtimed.sock" --pods "$pods" --parallel 1 \
			--host-network --json "$out/bench-$driver-$round.json" >"$out/bench-$driver-$round.txt" 2>&1
		grep -E 'run→running|RunPodSandbox|StartContainer' "$out/bench-$driver-$round.txt" | head -3
	done
done
