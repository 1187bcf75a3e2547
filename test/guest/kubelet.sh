#!/bin/bash
# kubelet.sh runs inside the guest (the full suite calls it once the
# daemon runs as the installed systemd unit): a standalone kubelet (no API
# server) of the newest release at its defaults on cgroup v2 (no
# failCgroupV1 override, the cgroup driver read from the runtime) runs
# static pods against the unit's socket, and the pods' state is read as an
# operator would: kubelet's read-only /pods and /stats/summary, crictl
# being absent, the CRI through kubelet's view only. Checks: the pods run
# in kubelet's kubepods slices, an over-limit container ends OOMKilled,
# the summary has the pod's CPU and memory. Logs land in /mnt/out.
#
# The i10 kubelet suite (test/e2e/kubelet) is the thorough one; this is
# the guest's check that kubelet >= 1.35 starts on our runtime with the
# systemd driver at all.
set -u
host=${GUEST_SHARE:-/mnt/host}
out=/mnt/out
work=/var/tmp/kubelet
port=5056
kubelet=$host/kubelet
sock=/run/cri-runtimed/cri-runtimed.sock
mkdir -p "$work/manifests" "$work/registry"
fail=0
check() {
	local what=$1
	shift
	if "$@"; then echo "kubelet: ok: $what"; else echo "kubelet: FAIL: $what"; fail=$((fail + 1)); fi
}

cat >"$work/registry/config.yml" <<CFG
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
CFG
/usr/bin/docker-registry serve "$work/registry/config.yml" >"$work/registry/log" 2>&1 &
registry=$!
pids=("$registry")
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT
for _ in $(seq 300); do
	busybox wget -q -O /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null && break
	sleep 0.1
done
"$host/pushimages" --registry "http://127.0.0.1:$port" >"$out/kubelet-push.log" 2>&1 || {
	echo "kubelet: pushing the images failed"
	exit 1
}
# The installed daemon reads certs.d at each pull.
mkdir -p /etc/cri-runtimed/certs.d/docker.io
printf 'server = "http://127.0.0.1:%s"\n' "$port" >/etc/cri-runtimed/certs.d/docker.io/hosts.toml

# A node with swap sets failSwapOn: false (the full suite turned swap on
# for the swap tests); kubelet needs a resolv.conf for pod DNS.
[ -e /etc/resolv.conf ] || : >/etc/resolv.conf
cat >"$work/kubelet.yaml" <<CFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$sock
staticPodPath: $work/manifests
fileCheckFrequency: 1s
address: 127.0.0.1
readOnlyPort: 10255
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
failSwapOn: false
CFG
cat >"$work/manifests/sleeper.yaml" <<'POD'
apiVersion: v1
kind: Pod
metadata:
  name: sleeper
  namespace: default
spec:
  containers:
  - name: sleep
    image: docker.io/library/busybox:latest
    command: ["sleep", "100000"]
    resources:
      limits: {cpu: 200m, memory: 64Mi}
      requests: {cpu: 100m, memory: 32Mi}
POD
cat >"$work/manifests/oom.yaml" <<'POD'
apiVersion: v1
kind: Pod
metadata:
  name: oom
  namespace: default
spec:
  restartPolicy: Never
  containers:
  - name: hog
    image: docker.io/library/busybox:latest
    command: ["sh", "-c", "x=a; while true; do x=$x$x; done"]
    resources:
      limits: {memory: 32Mi}
POD

t0=$(cut -d' ' -f1 /proc/uptime)
"$kubelet" --config "$work/kubelet.yaml" --hostname-override guest --root-dir "$work/root" -v 2 >"$out/kubelet.log" 2>&1 &
pids+=($!)
pods() { busybox wget -q -O - http://127.0.0.1:10255/pods 2>/dev/null; }
# waitfor WHAT SECONDS PATTERN waits until /pods matches PATTERN.
waitfor() {
	local i
	for i in $(seq "$2"); do
		pods | grep -Eq -- "$3" && return 0
		sleep 1
	done
	return 1
}
check "kubelet serves /pods" waitfor "kubelet" 600 '"kind":"PodList"'
check "the sleeper pod runs" waitfor "sleeper" 900 '"name":"sleep","state":{"running"'
echo "kubelet: sleeper running $(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN{print b - a}') s after kubelet started"
check "the hog ends OOMKilled" waitfor "oom" 600 '"reason":"OOMKilled"'
pods >"$out/kubelet-pods.json"
cgls=$(systemd-cgls --no-pager /kubepods.slice 2>&1)
echo "$cgls" >"$out/kubelet-cgls.txt"
check "kubelet's pod slices under kubepods.slice" grep -Eq 'kubepods-(burstable-|besteffort-)?pod[0-9a-f_]+\.slice' <<<"$cgls"
check "the containers are scopes in them" grep -q 'cri-runtimed-.*\.scope' <<<"$cgls"
summary=$(busybox wget -q -O - http://127.0.0.1:10255/stats/summary 2>/dev/null)
echo "$summary" >"$out/kubelet-summary.json"
check "/stats/summary has the sleeper's memory" grep -q '"name":"sleep".*"workingSetBytes"' <<<"$(tr -d ' \n' <<<"$summary")"
grep -E 'Using cgroup driver' "$out/kubelet.log" | head -2
rm -f "$work/manifests/"*.yaml
check "kubelet removes the pods" waitfor "removal" 600 '"items":(\[\]|null)'
kill "${pids[@]:1}" 2>/dev/null
exit $fail
