#!/usr/bin/env bash
# containerd-peer.sh — run Debian's containerd as the benchmark peer.
#
# containerd's CRI plugin is what cri-runtimed is compared against; it is
# a peer on the machine, never a dependency of the code. This script
# installs Debian's package if missing and runs containerd with every path
# of its own, so it touches neither /etc/containerd, /var/lib/containerd
# nor /etc/cni/net.d and can run next to cri-runtimed:
#
#   root   /var/lib/cri-bench-containerd  (config, content, snapshots, CNI conf, log)
#   state  /run/cri-bench-containerd      (socket, shim bundles, netns, runc root)
#
# CRI settings: cgroupfs (SystemdCgroup=false), registry hosts from its own
# certs.d where docker.io and registry.k8s.io point at the local registry
# (local-registry.sh), sandbox_image registry.k8s.io/pause:3.6 (a busybox
# pause stand-in pushed there), a bridge network cribench0 with host-local
# IPs in 10.99.0.0/16 that is not a gateway (so the host's ip_forward is
# left alone and nothing is routed off the host). containerd 1.6 refuses
# RunPodSandbox for pod-network pods without a CNI config, hence the
# bridge.
#
# This VM's root lacks CAP_SYS_RESOURCE, so negative oom_score_adj values
# fail: oom_score = 0 keeps containerd from lowering its own, and
# restrict_oom_score_adj = true clamps the sandbox's -998 (and any
# container's) to containerd's own value instead of failing the pod.
#
# Idempotent: when the peer already runs, it only prints the endpoint.
# Stop it and remove all its state with containerd-peer-stop.sh.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=/var/lib/cri-bench-containerd
STATE=/run/cri-bench-containerd
SOCK=$STATE/containerd.sock
PIDFILE=$STATE/containerd.pid
LOG=$ROOT/containerd.log
CNI_BIN=/usr/lib/cni
BRIDGE=cribench0
SUBNET=10.99.0.0/16

die() { echo "containerd-peer: $*" >&2; exit 1; }

running() { [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; }

[[ $(id -u) == 0 ]] || die "run as root"

if running && [[ -S $SOCK ]]; then
	echo "unix://$SOCK"
	exit 0
fi

missing=()
for p in containerd runc containernetworking-plugins; do
	dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
	echo "containerd-peer: installing ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq >&2
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

registry=$("$HERE/local-registry.sh" start)

mkdir -p "$ROOT" "$STATE"
# Remember what the machine looked like before containerd ran, so that the
# stop script removes what containerd created outside its own directories
# and nothing else. A restart after a crash keeps the first record.
if [[ ! -f $ROOT/before.env ]]; then
	{
		# The shims put their sockets under /run/containerd/s whatever
		# the state dir is.
		[[ -e /run/containerd ]] && echo "had_run_containerd=1" || echo "had_run_containerd=0"
		# Pods without cgroup_parent go to /k8s.io/<id> in every
		# controller.
		[[ -e /sys/fs/cgroup/memory/k8s.io ]] && echo "had_cgroup_k8s_io=1" || echo "had_cgroup_k8s_io=0"
		# libcni caches results in /var/lib/cni/results whatever the
		# plugin config says.
		[[ -e /var/lib/cni ]] && echo "had_var_lib_cni=1" || echo "had_var_lib_cni=0"
		echo "ip_forward=$(cat /proc/sys/net/ipv4/ip_forward)"
	} >"$ROOT/before.env"
fi

# Registry hosts: both names the benchmark uses resolve to the local
# registry over plain HTTP.
for host in docker.io registry.k8s.io; do
	mkdir -p "$ROOT/certs.d/$host"
	cat >"$ROOT/certs.d/$host/hosts.toml" <<EOF
server = "$registry"

[host."$registry"]
  capabilities = ["pull", "resolve"]
EOF
done

mkdir -p "$ROOT/cni/net.d" "$ROOT/cni/ipam"
cat >"$ROOT/cni/net.d/10-cribench.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "cribench",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": false,
      "ipMasq": false,
      "ipam": {
        "type": "host-local",
        "dataDir": "$ROOT/cni/ipam",
        "ranges": [[{"subnet": "$SUBNET"}]]
      }
    }
  ]
}
EOF

cat >"$ROOT/config.toml" <<EOF
version = 2
root = "$ROOT/root"
state = "$STATE/state"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "$SOCK"

[ttrpc]
  address = "$SOCK.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "$ROOT/opt"

  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.6"
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
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
          Root = "$STATE/runc"

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "$CNI_BIN"
      conf_dir = "$ROOT/cni/net.d"
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = "$ROOT/certs.d"
EOF

# setsid: containerd must outlive this script and not get the terminal's
# Ctrl-C; its shims follow it out of the session.
setsid /usr/bin/containerd --config "$ROOT/config.toml" >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"

for _ in $(seq 300); do
	[[ -S $SOCK ]] && ctr --address "$SOCK" version >/dev/null 2>&1 && break
	running || die "containerd exited; log tail:
$(tail -20 "$LOG")"
	sleep 0.1
done
ctr --address "$SOCK" version >/dev/null 2>&1 || die "containerd not answering on $SOCK; log: $LOG"
echo "containerd-peer: $(containerd --version) pid $(cat "$PIDFILE"), log $LOG" >&2
echo "unix://$SOCK"
