#!/usr/bin/env bash
# test/cluster/run.sh: a single-node Kubernetes cluster installed by kubeadm
# on cri-runtimed, driven with kubectl as an operator would (make
# test-cluster). See README.md, "A kubeadm cluster".
#
# It runs on this host, not in the systemd guest of test/guest: under qemu's
# software emulation the control plane (etcd, kube-apiserver and the
# controllers) would take roughly 30 times longer to come up and to answer,
# while everything the cluster asks of the runtime is the same. Without
# systemd the test starts the kubelet kubeadm configures itself, with the
# flags of kubeadm's systemd drop-in, as soon as kubeadm has written them.
#
# Usage:
#   run.sh        bring the cluster up, check workloads through it, reset it
#   run.sh up     bring the cluster up (node Ready, kube-proxy, CoreDNS) and keep it
#   run.sh down   remove a kept cluster (kubeadm reset, daemon, host restored, lock dropped)
# A kept cluster: KUBECONFIG=/etc/kubernetes/admin.conf, kubectl in
# $CLUSTER_BIN_DIR, the runtime's socket /run/cri-runtimed/cri-runtimed.sock.
#
# Environment:
#   CLUSTER_VERSION     Kubernetes release (default v1.37.2; make cluster-bins builds it)
#   CLUSTER_BIN_DIR     kubeadm, kubectl, kube-*, etcd, coredns (default /var/cache/cri-runtimed-test/cluster/$CLUSTER_VERSION)
#   CLUSTER_KUBELET     kubelet binary (default /var/cache/cri-runtimed-test/kubelet/$CLUSTER_VERSION/kubelet)
#   CRI_RUNTIMED_BIN    the daemon (default bin/cri-runtimed)
#   CLUSTER_OUT         logs (default cluster-out/)
#   CLUSTER_KEEP=1      run the checks, then leave the cluster running (no reset; run.sh down removes it)
#   CLUSTER_SMOKE=1     only bring-up, one Deployment, reset
#   CLUSTER_RUNTIME     cri-runtimed (default) or containerd: the same cluster on
#                       Debian's containerd, the peer conformance is compared with
#   CLUSTER_LOCK_WAIT   seconds to wait for the host's kubelet lock (default 1200)
#
# The host's kubelet lock: a kubelet binds fixed ports and owns node-wide
# state, so the cluster and the kubelet suite (test/kubeletnode, which
# takes the same lock) never run at once. run.sh takes
# /run/cri-runtimed-test/kubelet-host.lock (flock) before it checks the
# host and holds it until the cluster is removed: at the end of the run,
# or, with CLUSTER_KEEP=1, until `run.sh down`. The file names its holder.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VERSION=${CLUSTER_VERSION:-v1.37.2}
BIN_DIR=${CLUSTER_BIN_DIR:-/var/cache/cri-runtimed-test/cluster/$VERSION}
KUBELET=${CLUSTER_KUBELET:-/var/cache/cri-runtimed-test/kubelet/$VERSION/kubelet}
DAEMON=${CRI_RUNTIMED_BIN:-$REPO/bin/cri-runtimed}
OUT=${CLUSTER_OUT:-$REPO/cluster-out}
WORK=/var/lib/cri-runtimed-cluster
RUNTIME=${CLUSTER_RUNTIME:-cri-runtimed}
STATE=/run/cri-runtimed
SOCK=$STATE/cri-runtimed.sock
# The containerd peer (CLUSTER_RUNTIME=containerd): Debian's containerd
# with its root under $WORK and a state dir of its own.
CSTATE=/run/cri-runtimed-cluster-containerd
case $RUNTIME in
cri-runtimed) ;;
containerd) SOCK=$CSTATE/containerd.sock ;;
*) echo "CLUSTER_RUNTIME=$RUNTIME: cri-runtimed or containerd" >&2; exit 2 ;;
esac
ENDPOINT=unix://$SOCK
REGISTRY_PORT=${CLUSTER_REGISTRY_PORT:-5057}
REGISTRY=http://127.0.0.1:$REGISTRY_PORT
METRICS=127.0.0.1:${CLUSTER_METRICS_PORT:-9157}
POD_SUBNET=10.244.0.0/16
BRIDGE=crtk8s0
WEB=registry.k8s.io/cri-runtimed-test/web
export KUBECONFIG=/etc/kubernetes/admin.conf
export PATH=$(dirname "$KUBELET"):$BIN_DIR:$PATH  # kubeadm runs kubelet --version

# Host settings the cluster changes (kubeadm's preflight wants forwarding
# and bridged traffic through iptables, kubelet and kube-proxy set the
# rest); restored at the end.
SYSCTLS=(net/ipv4/ip_forward net/bridge/bridge-nf-call-iptables net/ipv4/conf/all/route_localnet
	vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
	kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
# Chains kubelet and kube-proxy create outside what `kube-proxy --cleanup`
# removes: "table chain [jumping built-in chains]".
CHAINS=("mangle KUBE-IPTABLES-HINT" "mangle KUBE-KUBELET-CANARY" "nat KUBE-KUBELET-CANARY"
	"filter KUBE-KUBELET-CANARY" "filter KUBE-FIREWALL INPUT OUTPUT" "mangle KUBE-PROXY-CANARY"
	"nat KUBE-PROXY-CANARY" "filter KUBE-PROXY-CANARY")

# shellcheck source=test/cluster/resize.sh
source "$REPO/test/cluster/resize.sh"

LOCK=/run/cri-runtimed-test/kubelet-host.lock
LOCK_HOLDER=/run/cri-runtimed-test/cluster-lock.pid

log() { printf '%s [cluster] %s\n' "$(date -u +%T)" "$*"; }
die() { log "FAIL: $*"; exit 1; }
START=$(date +%s)
since() { echo $(($(date +%s) - $1)); }

kubectl() { command "$BIN_DIR/kubectl" --request-timeout=60s "$@"; }

# retry SECONDS CMD...: run CMD until it succeeds or SECONDS pass.
retry() {
	local until=$(($(date +%s) + $1)); shift
	until "$@"; do
		(($(date +%s) < until)) || return 1
		sleep 2
	done
}

# lock_host takes the host's kubelet lock and hands it to a holder process
# that keeps it until unlock_host: the lock outlives this script when the
# cluster is kept. Nothing else inherits the descriptor.
lock_host() {
	local fd
	mkdir -p "$(dirname "$LOCK")"
	exec {fd}<>"$LOCK"
	if ! flock -n "$fd"; then
		log "waiting up to ${CLUSTER_LOCK_WAIT:-1200} s for the host's kubelet lock $LOCK, held by: $(cat "$LOCK")"
		flock -w "${CLUSTER_LOCK_WAIT:-1200}" "$fd" ||
			die "another kubelet test holds this host ($LOCK: $(cat "$LOCK")); a kept cluster goes with $0 down"
	fi
	setsid sleep infinity </dev/null >/dev/null 2>&1 &
	echo $! >"$LOCK_HOLDER"
	exec {fd}>&-
	echo "test/cluster/run.sh pid $$ since $(date -u +%FT%TZ)" >"$LOCK"
}

# unlock_host ends the holder, which drops the lock. The holder's pid
# file goes first: a run waiting for the lock writes its own as soon as
# the holder is gone, which removing it afterwards would lose (and leave
# that run's holder, and the lock, behind for good).
unlock_host() {
	[[ -f $LOCK_HOLDER ]] || return 0
	local pid
	pid=$(cat "$LOCK_HOLDER")
	rm -f "$LOCK_HOLDER"
	: >"$LOCK"
	kill "$pid" 2>/dev/null || true
}

check_host_free() {
	local p
	for p in 6443 2379 2380 10248 10250 10257 10259 "$REGISTRY_PORT"; do
		if ss -Hltn "sport = :$p" | grep -q .; then
			die "port $p is taken (another kubelet, cluster or registry runs here): $(ss -Hltnp "sport = :$p")"
		fi
	done
	pgrep -x kubelet >/dev/null && die "a kubelet runs on this host already"
	[[ ! -e /etc/kubernetes/manifests ]] || die "/etc/kubernetes/manifests exists: another cluster is installed (kubeadm reset first)"
	[[ ! -e /var/lib/etcd ]] || die "/var/lib/etcd exists: another cluster is installed (kubeadm reset first)"
	[[ ! -e $SOCK ]] || die "$SOCK exists: a $RUNTIME runs with the cluster's state dir"
	for b in kubeadm kubectl kube-proxy; do [[ -x $BIN_DIR/$b ]] || die "$BIN_DIR/$b missing: make cluster-bins"; done
	[[ -x $KUBELET ]] || die "$KUBELET missing: make cluster-bins"
	[[ -x $DAEMON ]] || die "$DAEMON missing: make build"
}

record_host() {
	mkdir -p "$WORK"
	: >"$WORK/sysctls"
	for k in "${SYSCTLS[@]}"; do
		[[ -e /proc/sys/$k ]] && echo "$k $(cat "/proc/sys/$k")" >>"$WORK/sysctls"
	done
	: >"$WORK/new-chains"
	for c in "${CHAINS[@]}"; do
		read -r table chain _ <<<"$c"
		iptables -w -t "$table" -S "$chain" >/dev/null 2>&1 || echo "$c" >>"$WORK/new-chains"
	done
	for d in /var/lib/kubelet /var/log/containers /var/log/pods /etc/kubernetes "$STATE" /sys/fs/cgroup/memory/kubepods \
		/run/containerd /var/lib/cni "$CSTATE"; do
		[[ -e $d ]] && echo "$d" >>"$WORK/had-dirs"
	done
	true
}

restore_host() {
	[[ -f $WORK/sysctls ]] || return 0
	while read -r k v; do
		[[ $(cat "/proc/sys/$k") == "$v" ]] || echo "$v" >"/proc/sys/$k" || log "restore $k=$v failed"
	done <"$WORK/sysctls"
	"$BIN_DIR/kube-proxy" --cleanup >>"$OUT/kube-proxy-cleanup.log" 2>&1 || log "kube-proxy --cleanup failed (see $OUT/kube-proxy-cleanup.log)"
	while read -r table chain jumps; do
		iptables -w -t "$table" -S "$chain" >/dev/null 2>&1 || continue
		for j in $jumps; do
			while iptables -w -t "$table" -D "$j" -j "$chain" 2>/dev/null; do :; done
		done
		iptables -w -t "$table" -F "$chain"; iptables -w -t "$table" -X "$chain"
	done < <(cat "$WORK/new-chains" 2>/dev/null)
	# containerd's shims keep their sockets in /run/containerd whatever
	# its state dir, and its libcni caches results in /var/lib/cni.
	for d in /var/lib/kubelet /var/log/containers /var/log/pods /etc/kubernetes "$STATE" \
		/run/containerd /var/lib/cni "$CSTATE"; do
		grep -qx "$d" "$WORK/had-dirs" 2>/dev/null && continue
		# kubelet bind-mounts its directory onto itself, the daemon its
		# netns directory.
		awk -v d="$d" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r |
			while read -r m; do umount "$m" || log "umount $m failed"; done
		rm -rf "$d"
	done
	rm -rf /var/lib/etcd
	ip link del "$BRIDGE" 2>/dev/null || true
	remove_kubepods
}

# remove_kubepods removes kubelet's QoS cgroups (cgroupfs driver) in every
# hierarchy, deepest first.
remove_kubepods() {
	local root
	# Another kubelet's (the kubelet suite's) are left alone.
	grep -qx /sys/fs/cgroup/memory/kubepods "$WORK/had-dirs" 2>/dev/null && return
	for root in $(awk '$3 ~ /^cgroup2?$/ {print $2}' /proc/mounts); do
		[[ -d $root/kubepods ]] || continue
		find "$root/kubepods" -depth -type d -exec rmdir {} + 2>/dev/null || true
		[[ ! -d $root/kubepods ]] || log "kubelet's cgroup $root/kubepods is left"
	done
}

start_registry() {
	mkdir -p "$WORK/registry"
	cat >"$WORK/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry/data
http:
  addr: 127.0.0.1:$REGISTRY_PORT
EOF
	setsid /usr/bin/docker-registry serve "$WORK/registry/config.yml" >>"$OUT/registry.log" 2>&1 </dev/null &
	echo $! >"$WORK/registry.pid"
	retry 20 curl -fs -o /dev/null "$REGISTRY/v2/" || die "docker-registry does not answer on $REGISTRY"
	# shellcheck disable=SC2046
	(cd "$REPO" && go run -tags e2e ./test/cluster/pushimages --registry "$REGISTRY" --bin-dir "$BIN_DIR" \
		$(kubeadm config images list --kubernetes-version "$VERSION")) >"$OUT/pushimages.log" 2>&1 ||
		die "pushing the cluster's images failed: $(tail -5 "$OUT/pushimages.log")"
}

# The daemon: its own root, the default state dir (so the socket is the
# one kubeadm is told), registry.k8s.io served by the local registry, the
# cluster's bridge network, and metrics to count its pods and containers.
start_runtime() {
	mkdir -p "$WORK/certs.d/registry.k8s.io" "$WORK/net.d" "$WORK/ipam"
	cat >"$WORK/certs.d/registry.k8s.io/hosts.toml" <<EOF
server = "$REGISTRY"

[host."$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
	# Debian's containernetworking-plugins: a bridge with host-local
	# addresses from the cluster's pod subnet, hairpin so a pod reaches
	# itself through its Service.
	cat >"$WORK/net.d/10-cluster.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "cri-runtimed-cluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$WORK/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF
	[[ $RUNTIME == containerd ]] && { start_containerd; return; }
	cat >"$WORK/config.toml" <<EOF
root = '$WORK/root'
state = '$STATE'

[image]
  registry_config_path = '$WORK/certs.d'

[runtime]
  cgroup_driver = 'cgroupfs'

[cni]
  conf_dir = '$WORK/net.d'

[metrics]
  address = '$METRICS'
EOF
	setsid "$DAEMON" --config "$WORK/config.toml" -v=2 >>"$OUT/cri-runtimed.log" 2>&1 </dev/null &
	echo $! >"$WORK/daemon.pid"
	retry 30 test -S "$SOCK" || die "cri-runtimed did not start: $(tail -5 "$OUT/cri-runtimed.log")"
}

# start_containerd runs the peer as test/bench/containerd-peer.sh does
# (cgroupfs, restrict_oom_score_adj: root here lacks CAP_SYS_RESOURCE),
# with the cluster's registry hosts, network and pause image.
start_containerd() {
	mkdir -p "$CSTATE"
	cat >"$WORK/containerd.toml" <<EOF
version = 2
root = "$WORK/root"
state = "$CSTATE/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$WORK/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.10.2"
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    enable_selinux = false
    disable_apparmor = true

    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = false
          BinaryName = "/usr/sbin/runc"
          Root = "$CSTATE/runc"

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "$WORK/net.d"
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$WORK/certs.d"
EOF
	setsid /usr/bin/containerd --config "$WORK/containerd.toml" >>"$OUT/containerd.log" 2>&1 </dev/null &
	echo $! >"$WORK/daemon.pid"
	retry 30 test -S "$SOCK" || die "containerd did not start: $(tail -5 "$OUT/containerd.log")"
}

# stop_shims ends containerd's shims of this cluster (they outlive
# containerd) by pid: those started with its socket as their address.
stop_shims() {
	local f pid
	for f in /proc/[0-9]*/cmdline; do
		pid=${f#/proc/}; pid=${pid%/cmdline}
		{ tr '\0' ' ' <"$f"; } 2>/dev/null | grep -q "^/usr/bin/containerd-shim-runc-v2 .*-address $SOCK " && kill -9 "$pid"
	done
	true
}

stop_pidfile() {
	local f=$1 pid
	[[ -f $f ]] || return 0
	pid=$(cat "$f")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	kill -9 "$pid" 2>/dev/null || true
	rm -f "$f"
}

kubeadm_config() {
	echo "nameserver ${POD_SUBNET%.0/*}.1" >"$WORK/resolv.conf"
	cat >"$WORK/kubeadm.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
nodeRegistration:
  criSocket: $ENDPOINT
  imagePullPolicy: IfNotPresent
# A loaded two-core machine starts the control plane slowly.
timeouts:
  controlPlaneComponentHealthCheck: 10m0s
  kubeletHealthCheck: 10m0s
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $VERSION
networking:
  podSubnet: $POD_SUBNET
  serviceSubnet: 10.96.0.0/12
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
# Pods (CoreDNS's upstream among them) get a resolver on the pod bridge's
# own gateway address, where nothing answers, instead of the host's: no
# query leaves the host.
resolvConf: $WORK/resolv.conf
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
# The host's conntrack table sizes and timeouts stay as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# start_kubelet waits for the files kubeadm's kubelet-start phase writes
# and starts the kubelet as kubeadm's systemd drop-in
# (10-kubeadm.conf) would.
start_kubelet() {
	local init=$1
	until [[ -s /var/lib/kubelet/kubeadm-flags.env && -s /var/lib/kubelet/config.yaml ]]; do
		kill -0 "$init" 2>/dev/null || return 1
		sleep 1
	done
	sleep 1
	local KUBELET_KUBEADM_ARGS=""
	# shellcheck disable=SC1091
	source /var/lib/kubelet/kubeadm-flags.env
	# shellcheck disable=SC2086
	setsid "$KUBELET" --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
		--kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \
		$KUBELET_KUBEADM_ARGS >>"$OUT/kubelet.log" 2>&1 </dev/null &
	echo $! >"$WORK/kubelet.pid"
	log "kubelet started (pid $!) with $KUBELET_KUBEADM_ARGS"
}

bring_up() {
	local t0
	t0=$(date +%s)
	kubeadm_config
	kubeadm init --config "$WORK/kubeadm.yaml" --ignore-preflight-errors=SystemVerification \
		>"$OUT/kubeadm-init.log" 2>&1 &
	local init=$!
	echo $init >"$WORK/kubeadm.pid"
	start_kubelet $init || { kill $init 2>/dev/null; die "kubeadm wrote no kubelet config: $(tail -20 "$OUT/kubeadm-init.log")"; }
	wait $init || die "kubeadm init failed: $(tail -30 "$OUT/kubeadm-init.log")"
	rm -f "$WORK/kubeadm.pid"
	log "kubeadm init done in $(since "$t0") s"
	kubectl taint nodes --all node-role.kubernetes.io/control-plane- >/dev/null
	kubectl wait --for=condition=Ready node --all --timeout=300s >/dev/null ||
		die "node not Ready: $(kubectl describe node | tail -30)"
	kubectl -n kube-system rollout status daemonset/kube-proxy --timeout=300s >/dev/null ||
		die "kube-proxy not ready: $(kubectl -n kube-system get pods -o wide)"
	kubectl -n kube-system wait --for=condition=Available deployment/coredns --timeout=300s >/dev/null ||
		die "CoreDNS not Available: $(kubectl -n kube-system get pods -o wide)"
	BRINGUP=$(since "$t0")
	log "cluster up in $BRINGUP s (kubeadm init to node Ready, kube-proxy and CoreDNS available)"
	kubectl get nodes -o wide
	kubectl -n kube-system get pods -o wide
}

web_deployment() {
	kubectl apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxUnavailable: 1, maxSurge: 1}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: $WEB:v1
        ports: [{containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /, port: 8080}
          periodSeconds: 2
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
EOF
	local t0
	t0=$(date +%s)
	kubectl wait --for=condition=Available deployment/web --timeout=300s >/dev/null ||
		die "Deployment web not Available: $(kubectl get pods -o wide; kubectl describe deployment web | tail -20)"
	[[ $(kubectl get deployment web -o jsonpath='{.status.availableReplicas}') == 3 ]] ||
		die "web: $(kubectl get deployment web -o wide)"
	log "Deployment web: 3 replicas Available in $(since "$t0") s"
}

# web_pods prints the names of web's running, ready pods.
web_pods() {
	kubectl get pods -l app=web --field-selector=status.phase=Running \
		-o go-template='{{range .items}}{{if not .metadata.deletionTimestamp}}{{.metadata.name}}{{"\n"}}{{end}}{{end}}'
}

exec_logs() {
	local pod out rc
	pod=$(web_pods | sed -n 1p)
	[[ -n $pod ]] || die "no running web pod: $(kubectl get pods -o wide)"
	out=$(kubectl exec "$pod" -- cat /www/index.html)
	[[ $out == "v1 $pod" ]] || die "kubectl exec $pod cat: got '$out', want 'v1 $pod'"
	rc=0; kubectl exec "$pod" -- sh -c 'echo to-stderr >&2; exit 7' 2>"$WORK/exec.err" || rc=$?
	[[ $rc == 7 ]] || die "kubectl exec exit status $rc, want 7"
	grep -q to-stderr "$WORK/exec.err" || die "kubectl exec lost stderr: $(cat "$WORK/exec.err")"
	out=$(printf 'line1\nline2\n' | kubectl exec -i "$pod" -- wc -l)
	[[ $out == 2 ]] || die "kubectl exec -i: wc -l gave '$out', want 2"
	log "kubectl exec: stdout, stderr, stdin and exit status"
	out=$(kubectl logs "$pod")
	grep -q "web v1 starting" <<<"$out" || die "kubectl logs $pod: '$out' lacks the start line"
	# The readiness probes are in httpd's log (-v) too: the log follows.
	retry 30 sh -c "'$BIN_DIR/kubectl' logs '$pod' | grep -q 'response:200'" || die "kubectl logs $pod: no request logged"
	log "kubectl logs: the container's output"
}

service() {
	local ip out
	ip=$(kubectl get service web -o jsonpath='{.spec.clusterIP}')
	kubectl run client --image="$WEB:v1" --restart=Never --command -- sleep 3600 >/dev/null
	kubectl wait --for=condition=Ready pod/client --timeout=120s >/dev/null || die "pod client not Ready"
	local seen=""
	for _ in $(seq 30); do
		# nc: Debian's static busybox wget crashes looking up the
		# "http" service without NSS modules.
		out=$(kubectl exec client -- sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 $ip 80 | tail -1" 2>&1) ||
			die "client -> $ip:80: $out"
		seen+="${out#v1 }"$'\n'
		[[ $(sort -u <<<"$seen" | grep -c .) -ge 2 ]] && break
	done
	[[ $out == v1\ web-* ]] || die "client -> Service web ($ip): got '$out'"
	log "Service web (ClusterIP $ip) from pod client: answered by $(sort -u <<<"$seen" | grep -c .) pods"
	# busybox's own resolver: its static glibc has no NSS modules.
	out=$(kubectl exec client -- nslookup web.default.svc.cluster.local 2>&1) ||
		die "client: nslookup web.default.svc.cluster.local (CoreDNS): $out"
	grep -q "Address: $ip" <<<"$out" || die "CoreDNS resolves web.default.svc.cluster.local to: $out"
	log "Service web's DNS name resolves to $ip through CoreDNS"
}

port_forward() {
	local pod port=18080 out pf
	pod=$(web_pods | sed -n 1p)
	kubectl port-forward "pod/$pod" "$port:8080" >"$WORK/port-forward.log" 2>&1 &
	pf=$!
	retry 30 curl -fs -o /dev/null "http://127.0.0.1:$port/" || { kill $pf; die "port-forward: $(cat "$WORK/port-forward.log")"; }
	out=$(curl -fsS "http://127.0.0.1:$port/")
	kill $pf; wait $pf 2>/dev/null || true
	[[ $out == "v1 $pod" ]] || die "port-forward to $pod: got '$out'"
	log "kubectl port-forward: 127.0.0.1:$port -> $pod:8080"
}

attach() {
	kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: attach}
spec:
  restartPolicy: Never
  containers:
  - name: echo
    image: $WEB:v1
    command: [sh, -c, 'while read l; do echo "got:\$l"; done; echo bye']
    stdin: true
    stdinOnce: true
EOF
	kubectl wait --for=condition=Ready pod/attach --timeout=120s >/dev/null || die "pod attach not Ready"
	local out
	out=$(printf 'hello\nworld\n' | timeout 60 "$BIN_DIR/kubectl" attach -i attach -c echo 2>"$WORK/attach.err") ||
		die "kubectl attach: $out $(cat "$WORK/attach.err")"
	grep -q got:hello <<<"$out" && grep -q got:world <<<"$out" || die "kubectl attach: got '$out'"
	kubectl wait --for=jsonpath='{.status.phase}'=Succeeded pod/attach --timeout=60s >/dev/null ||
		die "pod attach did not end when its stdin closed: $(kubectl get pod attach -o wide)"
	log "kubectl attach: stdin in, stdout back, the container ends at stdin's end"
}

rolling_update() {
	local before after p out t0
	before=$(web_pods | sort)
	t0=$(date +%s)
	kubectl set image deployment/web "web=$WEB:v2" >/dev/null
	kubectl rollout status deployment/web --timeout=300s >/dev/null || die "rollout to v2: $(kubectl get pods -o wide)"
	retry 60 sh -c "[ \$('$BIN_DIR/kubectl' get pods -l app=web --no-headers | wc -l) = 3 ]" ||
		die "old pods stay: $(kubectl get pods -l app=web)"
	after=$(web_pods | sort)
	[[ -z $(comm -12 <(echo "$before") <(echo "$after")) ]] || die "pods survived the rollout: $before / $after"
	for p in $after; do
		out=$(kubectl exec "$p" -- cat /www/index.html)
		[[ $out == "v2 $p" ]] || die "$p serves '$out' after the rollout"
	done
	log "rolling update to v2: 3 new pods in $(since "$t0") s"
}

oom() {
	kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: oom}
spec:
  restartPolicy: Always
  containers:
  - name: hog
    image: $WEB:v1
    command: [sh, -c, 'echo allocating; a=0123456789; while :; do a=\$a\$a; done']
    resources:
      limits: {memory: 32Mi}
EOF
	retry 180 sh -c "[ \"\$('$BIN_DIR/kubectl' get pod oom -o jsonpath='{.status.containerStatuses[0].restartCount}')\" -ge 1 ] 2>/dev/null" ||
		die "pod oom never restarted: $(kubectl describe pod oom | tail -30)"
	local reason
	reason=$(kubectl get pod oom -o jsonpath='{.status.containerStatuses[0].lastState.terminated.reason}')
	[[ $reason == OOMKilled ]] || die "pod oom's last termination: '$reason', want OOMKilled"
	log "pod oom: OOMKilled and restarted ($(kubectl get pod oom -o jsonpath='{.status.containerStatuses[0].restartCount}') restarts)"
}

# metric NAME{LABELS}: the daemon's value of a gauge.
metric() {
	curl -fsS "http://$METRICS/metrics" | awk -v m="$1" '$1 == m {print $2}'
}

reset_cluster() {
	local t0
	t0=$(date +%s)
	# kubeadm reset stops the kubelet with systemd where there is one;
	# here the test does, or it would recreate the static pods.
	stop_pidfile "$WORK/kubelet.pid"
	kubeadm reset -f --cri-socket "$ENDPOINT" >"$OUT/kubeadm-reset.log" 2>&1 ||
		die "kubeadm reset failed: $(tail -20 "$OUT/kubeadm-reset.log")"
	log "kubeadm reset done in $(since "$t0") s"
	RESET_DONE=1
	if [[ $RUNTIME == containerd ]]; then
		local left
		left=$(ctr --address "$SOCK" -n k8s.io tasks ls -q 2>&1)
		[[ -z $left ]] || die "after kubeadm reset containerd still runs tasks: $left"
		log "after kubeadm reset: containerd runs no task"
		return
	fi
	local pods ctrs shims mounts
	pods=$(metric 'cri_runtimed_pods{state="ready"}')
	ctrs=$(metric 'cri_runtimed_containers{state="running"}')
	shims=$(metric cri_runtimed_shims)
	[[ ${pods:-0} == 0 && ${ctrs:-0} == 0 && ${shims:-0} == 0 ]] ||
		die "after kubeadm reset the daemon has ready pods=$pods running containers=$ctrs shims=$shims"
	curl -fsS "http://$METRICS/metrics" | grep -E '^cri_runtimed_(pods|containers)\{' | awk '$2 != 0' >"$WORK/left" || true
	[[ ! -s $WORK/left ]] || die "after kubeadm reset the daemon still has: $(cat "$WORK/left")"
	# The daemon's netns directory is a bind mount of its own while it
	# runs; what is under it (a pod's netns pin) must be gone.
	mounts=$(awk -v s="$STATE/" -v r="$WORK/root/" -v n="$STATE/netns" \
		'$2 != n && (index($2, s) == 1 || index($2, r) == 1) {print $2}' /proc/self/mounts)
	[[ -z $mounts ]] || die "after kubeadm reset mounts are left: $mounts"
	[[ -z $(ls -A "$WORK/ipam/cri-runtimed-cluster" 2>/dev/null | grep -v -e '^last_reserved_ip' -e '^lock$') ]] ||
		die "after kubeadm reset pod addresses are still allocated: $(ls "$WORK/ipam/cri-runtimed-cluster")"
	log "after kubeadm reset: no pod, container, shim, mount or pod address of the daemon is left"
}

teardown() {
	local rc=$?
	set +e
	if [[ ${CLUSTER_KEEP:-} == 1 && $rc == 0 ]]; then
		echo "test/cluster/run.sh: a kept cluster (remove it with $0 down), since $(date -u +%FT%TZ)" >"$LOCK"
		log "cluster kept (KUBECONFIG=$KUBECONFIG); remove it with: $0 down"
		return
	fi
	down
	log "$([[ $rc == 0 ]] && echo PASS || echo FAIL) in $(since "$START") s; logs in $OUT"
	exit $rc
}

down() {
	set +e
	stop_pidfile "$WORK/kubeadm.pid"
	stop_pidfile "$WORK/kubelet.pid"
	if [[ ${RESET_DONE:-} != 1 && -e /etc/kubernetes ]]; then
		kubeadm reset -f --cri-socket "$ENDPOINT" >>"$OUT/kubeadm-reset.log" 2>&1
	fi
	stop_pidfile "$WORK/daemon.pid"
	[[ $RUNTIME != containerd ]] || stop_shims
	stop_pidfile "$WORK/registry.pid"
	restore_host
	# The daemon's root: snapshots are unmounted by now.
	umount -R "$WORK/root" 2>/dev/null
	rm -rf "$WORK"
	# Last: the next kubelet test starts on a restored host.
	unlock_host
}

main() {
	[[ $(id -u) == 0 ]] || die "run as root"
	mkdir -p "$OUT"
	case ${1:-} in
	down) down; return ;;
	up) CLUSTER_KEEP=1 ;;
	"") ;;
	*) die "usage: $0 [up|down]" ;;
	esac
	lock_host
	trap unlock_host EXIT
	check_host_free
	[[ ! -e $WORK ]] || die "$WORK exists: a cluster test runs or was left (run.sh down)"
	trap teardown EXIT
	trap 'exit 143' TERM INT
	record_host
	echo 1 >/proc/sys/net/ipv4/ip_forward
	echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables
	local t0
	t0=$(date +%s)
	start_registry
	log "images built and pushed to $REGISTRY in $(since "$t0") s"
	start_runtime
	bring_up
	if [[ ${1:-} == up ]]; then return; fi
	web_deployment
	exec_logs
	if [[ ${CLUSTER_SMOKE:-} != 1 ]]; then
		service
		port_forward
		attach
		rolling_update
		oom
		resize
	fi
	# A kept cluster is reset by run.sh down.
	[[ ${CLUSTER_KEEP:-} == 1 ]] || reset_cluster
}

main "$@"
