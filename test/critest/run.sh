#!/usr/bin/env bash
# run.sh — run cri-tools' critest (the CRI validation suite) against a
# cri-runtimed started just for the run, with no internet access.
#
#   sudo CRITEST=/path/to/critest test/critest/run.sh [critest args...]
#
# e.g. test/critest/run.sh --ginkgo.focus='Image Manager' or
# --ginkgo.skip='Streaming'. Arguments are passed to critest after
# --runtime-endpoint/--image-endpoint.
#
# The script does not build critest (cri-tools is not part of this
# repository). It:
#   1. starts Debian's docker-registry on a free 127.0.0.1 port with
#      storage in a temp dir and pushes stand-ins of every image critest
#      pulls (test/critest/images, built from Debian's busybox-static,
#      with /bin/sh from Debian's dynamically linked busybox: see
#      CRITEST_SHELL);
#   2. writes hosts.toml for gcr.io, registry.k8s.io, k8s.gcr.io and
#      docker.io pointing at that registry;
#   3. writes a CNI conflist (bridge crtcri0, host-local, portmap,
#      ipMasq false, a 10.x /24) and inserts
#      `iptables -I FORWARD -i crtcri0 ! -o crtcri0 -j DROP` so that
#      nothing is routed from the pods off the host;
#   4. starts the daemon with root, state, socket and CNI conf under a
#      short temp dir (/run/critest-XXXX);
#   5. runs critest and prints its summary;
#   6. on exit, even on failure or Ctrl-C: removes the pods (crictl rmp
#      when a crictl is found), stops the daemon, kills what it left
#      (shims, runc containers, cgroups), unmounts, stops the registry,
#      removes the bridge, the iptables rule and the temp dirs, and
#      restores ip_forward.
#
# Environment:
#   CRITEST           critest binary (required)
#   CRI_RUNTIMED_BIN  daemon binary (default: `make build`, bin/cri-runtimed)
#   CRICTL            crictl used to remove pods at the end (default: the
#                     crictl next to $CRITEST, else crictl in PATH; optional)
#   CRITEST_RESULTS   directory for critest.log, daemon.log, registry.log
#                     (default: a new /tmp/critest-results-XXXX; kept)
#   CRITEST_KEEP=1    keep the temp dir (daemon state) instead of removing it
#   CRITEST_SHELL     shell installed as /bin/sh in the test images (with the
#                     libraries ldd lists). Default: the busybox of Debian's
#                     package busybox (dynamically linked, built without
#                     FEATURE_SH_STANDALONE, so its ash runs ls from /bin and
#                     critest's MaskedPaths spec sees /bin/ls masked; the
#                     static busybox's ash runs ls in-process). It cannot be
#                     installed next to busybox-static, so the .deb is fetched
#                     with `apt-get download busybox` and unpacked under
#                     CRITEST_CACHE (default /var/cache/cri-runtimed-critest)
#                     once. When that fails: /bin/dash, which runs ls from
#                     /bin too but words errors "/bin/sh: 1: ls: ..." where
#                     the spec expects "/bin/sh: ls: ...".
#
# Exit status: critest's.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BRIDGE=crtcri0
MARKER=CRI_RUNTIMED_CRITEST_INSTANCE

die() { echo "critest/run.sh: $*" >&2; exit 1; }
log() { echo "critest/run.sh: $*" >&2; }

[[ $(id -u) == 0 ]] || die "run as root"
[[ -n ${CRITEST:-} ]] || die "set CRITEST=/path/to/critest (cri-tools' critest; this script does not build it)"
[[ -x $CRITEST ]] || die "CRITEST=$CRITEST is not executable"
for tool in /usr/bin/docker-registry /bin/busybox runc iptables ip curl go ss ldd; do
	command -v "$tool" >/dev/null || die "missing $tool (Debian: docker-registry, busybox-static, runc, iptables, iproute2, curl; Go)"
done
[[ -x /usr/lib/cni/bridge || -x /opt/cni/bin/bridge ]] || die "missing CNI plugins (Debian: containernetworking-plugins)"
if ip link show "$BRIDGE" >/dev/null 2>&1; then
	die "bridge $BRIDGE already exists: another run in progress, or a leftover (ip link del $BRIDGE)"
fi

if [[ -z ${CRI_RUNTIMED_BIN:-} ]]; then
	log "building the daemon (make build)"
	make -C "$REPO" build >&2 || die "make build failed"
	CRI_RUNTIMED_BIN=$REPO/bin/cri-runtimed
fi
[[ -x $CRI_RUNTIMED_BIN ]] || die "CRI_RUNTIMED_BIN=$CRI_RUNTIMED_BIN is not executable"
CRICTL=${CRICTL:-}
if [[ -z $CRICTL ]]; then
	if [[ -x $(dirname "$CRITEST")/crictl ]]; then
		CRICTL=$(dirname "$CRITEST")/crictl
	else
		CRICTL=$(command -v crictl || true)
	fi
fi

RESULTS=${CRITEST_RESULTS:-$(mktemp -d /tmp/critest-results-XXXX)}
mkdir -p "$RESULTS"
# Short: the socket path must stay under 108 bytes.
TMP=$(mktemp -d /run/critest-XXXX)
# Traversable (not readable) by others, as /run is: a pod with a user
# namespace runs its processes as unprivileged host IDs, which must reach
# the bundle and rootfs under the daemon's state (containerd makes its
# state and root directories 0711 for the same reason).
chmod 0711 "$TMP"
ROOT=$TMP/root
STATE=$TMP/state
SOCK=$TMP/cri.sock
CERTS=$TMP/certs.d
CNI_CONF=$TMP/net.d
CGROUP_PARENT=/$(basename "$TMP")
IP_FORWARD_BEFORE=$(cat /proc/sys/net/ipv4/ip_forward)
REGISTRY_PID=
DAEMON_PID=
RULE_ADDED=

# ---------------------------------------------------------------- cleanup

# kill_marked SIGKILLs every process whose environment carries the
# marker of this run: the daemon's children (shims) inherit it.
kill_marked() {
	local p env
	for p in /proc/[0-9]*; do
		[[ ${p#/proc/} == "$$" ]] && continue
		env=$(tr '\0' '\n' 2>/dev/null <"$p/environ") || continue
		if grep -qxF "$MARKER=$TMP" <<<"$env"; then
			kill -9 "${p#/proc/}" 2>/dev/null
		fi
	done
}

# unmount_all detaches every mount at or below $TMP, deepest first.
unmount_all() {
	local i m
	for i in 1 2 3 4 5; do
		mapfile -t mounts < <(awk -v d="$TMP" '$5 == d || index($5, d "/") == 1 { print length($5) " " $5 }' /proc/self/mountinfo | sort -rn | cut -d' ' -f2-)
		((${#mounts[@]})) || return 0
		for m in "${mounts[@]}"; do
			umount -l "$(printf '%b' "$m")" 2>/dev/null
		done
	done
}

# remove_cgroups kills what is left in the pods' cgroup parent and removes
# it, in every v1 controller and in the v2 hierarchy.
remove_cgroups() {
	local base dir
	for base in /sys/fs/cgroup/*/ /sys/fs/cgroup/; do
		dir=${base%/}$CGROUP_PARENT
		[[ -d $dir ]] || continue
		find "$dir" -name cgroup.procs -exec cat {} + 2>/dev/null | xargs -r kill -9 2>/dev/null
		sleep 0.2
		find "$dir" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	log "cleaning up"
	if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null && [[ -n $CRICTL && -S $SOCK ]]; then
		timeout 120 "$CRICTL" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" rmp -fa >>"$RESULTS/cleanup.log" 2>&1 ||
			log "crictl rmp -fa failed (see $RESULTS/cleanup.log); killing what is left"
	fi
	if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		kill -TERM "$DAEMON_PID" 2>/dev/null
		for _ in $(seq 200); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
		kill -0 "$DAEMON_PID" 2>/dev/null && { log "daemon ignored SIGTERM for 20s; SIGKILL"; kill -9 "$DAEMON_PID" 2>/dev/null; }
		wait "$DAEMON_PID" 2>/dev/null
	fi
	kill_marked
	# Containers the shims ran: runc roots are <state>/runtime/<handler>.
	local r id
	for r in "$STATE"/runtime/*/; do
		[[ -d $r ]] || continue
		for id in $(runc --root "$r" list -q 2>/dev/null); do
			runc --root "$r" kill "$id" KILL >/dev/null 2>&1
			runc --root "$r" delete -f "$id" >/dev/null 2>&1
		done
	done
	remove_cgroups
	unmount_all
	if [[ -n $REGISTRY_PID ]]; then
		kill "$REGISTRY_PID" 2>/dev/null
		wait "$REGISTRY_PID" 2>/dev/null
	fi
	if [[ -n $RULE_ADDED ]]; then
		iptables -w -D FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP 2>/dev/null || log "could not remove the FORWARD rule"
	fi
	ip link del "$BRIDGE" 2>/dev/null
	echo "$IP_FORWARD_BEFORE" >/proc/sys/net/ipv4/ip_forward
	if [[ -f $TMP/daemon.log ]]; then cp "$TMP/daemon.log" "$RESULTS/"; fi
	if [[ -f $TMP/registry/registry.log ]]; then cp "$TMP/registry/registry.log" "$RESULTS/"; fi
	if [[ -n ${CRITEST_KEEP:-} ]]; then
		log "keeping $TMP"
	else
		rm -rf "$TMP" 2>/dev/null || log "could not remove $TMP: $(find "$TMP" -maxdepth 3 | head -5)"
	fi
	log "results in $RESULTS"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- registry

free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 20000))
		[[ -z $(ss -Hltn "sport = :$p") ]] && { echo "$p"; return; }
	done
	die "no free port"
}

mkdir -p "$TMP/registry/data"
PORT=$(free_port)
REGISTRY=http://127.0.0.1:$PORT
cat >"$TMP/registry/config.yml" <<EOF
version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $TMP/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
EOF
/usr/bin/docker-registry serve "$TMP/registry/config.yml" >"$TMP/registry/registry.log" 2>&1 </dev/null &
REGISTRY_PID=$!
for _ in $(seq 100); do
	curl -fsS -o /dev/null "$REGISTRY/v2/" 2>/dev/null && break
	kill -0 "$REGISTRY_PID" 2>/dev/null || die "docker-registry exited: $(tail -5 "$TMP/registry/registry.log")"
	sleep 0.1
done
curl -fsS -o /dev/null "$REGISTRY/v2/" || die "docker-registry not answering on $REGISTRY"
# The images' /bin/sh (see CRITEST_SHELL above).
if [[ -z ${CRITEST_SHELL:-} ]]; then
	cache=${CRITEST_CACHE:-/var/cache/cri-runtimed-critest}
	if [[ ! -x $cache/busybox-deb/bin/busybox ]]; then
		log "fetching Debian's dynamically linked busybox (apt-get download busybox) into $cache"
		rm -rf "$cache/dl" "$cache/busybox-deb"
		mkdir -p "$cache/dl"
		if (cd "$cache/dl" && apt-get -q -o APT::Sandbox::User=root download busybox) >"$RESULTS/shell.log" 2>&1 &&
			dpkg-deb -x "$cache"/dl/busybox_*.deb "$cache/busybox-deb" >>"$RESULTS/shell.log" 2>&1; then
			rm -rf "$cache/dl"
		else
			rm -rf "$cache/dl" "$cache/busybox-deb"
		fi
	fi
	if [[ -x $cache/busybox-deb/bin/busybox ]]; then
		CRITEST_SHELL=$cache/busybox-deb/bin/busybox
	else
		CRITEST_SHELL=/bin/dash
		log "WARNING: could not get Debian's busybox (see $RESULTS/shell.log); /bin/sh of the images is $CRITEST_SHELL: the MaskedPaths spec will fail on the wording of the error"
	fi
fi
[[ -x $CRITEST_SHELL ]] || die "CRITEST_SHELL=$CRITEST_SHELL is not executable"
log "registry $REGISTRY; pushing images (/bin/sh: $CRITEST_SHELL)"
(cd "$REPO" && go run -tags e2e ./test/critest/images --registry "$REGISTRY" --shell "$CRITEST_SHELL") >"$RESULTS/images.log" 2>&1 ||
	die "pushing images failed: $(tail -20 "$RESULTS/images.log")"

for host in gcr.io registry.k8s.io k8s.gcr.io docker.io; do
	mkdir -p "$CERTS/$host"
	cat >"$CERTS/$host/hosts.toml" <<EOF
server = "$REGISTRY"

[host."$REGISTRY"]
  capabilities = ["pull", "resolve"]
EOF
done

# ---------------------------------------------------------------- network

# A /24 in 10.200.0.0/13 that no route of this machine uses.
SUBNET=
for _ in $(seq 50); do
	cand=10.$((200 + RANDOM % 8)).$((RANDOM % 256))
	ip -4 route | grep -q "^$cand\." && continue
	SUBNET=$cand.0/24
	break
done
[[ -n $SUBNET ]] || die "no free 10.x /24"
mkdir -p "$CNI_CONF" "$TMP/ipam"
cat >"$CNI_CONF/10-critest.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "critest",
  "plugins": [
    {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$TMP/ipam", "ranges": [[{"subnet": "$SUBNET"}]]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
# Pods talk to each other and to the host, never through the host to
# another interface.
iptables -w -I FORWARD -i "$BRIDGE" ! -o "$BRIDGE" -j DROP || die "iptables failed"
RULE_ADDED=1

# ---------------------------------------------------------------- daemon

cat >"$TMP/config.toml" <<EOF
root = '$ROOT'
state = '$STATE'

[grpc]
  address = '$SOCK'

[image]
  registry_config_path = '$CERTS'

[runtime]
  default_cgroup_parent = '$CGROUP_PARENT'

[cni]
  conf_dir = '$CNI_CONF'
EOF
env "$MARKER=$TMP" setsid "$CRI_RUNTIMED_BIN" --config "$TMP/config.toml" >"$TMP/daemon.log" 2>&1 </dev/null &
DAEMON_PID=$!
for _ in $(seq 300); do
	[[ -S $SOCK ]] && break
	kill -0 "$DAEMON_PID" 2>/dev/null || die "daemon exited: $(tail -20 "$TMP/daemon.log")"
	sleep 0.1
done
[[ -S $SOCK ]] || die "daemon socket $SOCK did not appear; log: $(tail -20 "$TMP/daemon.log")"
log "daemon $("$CRI_RUNTIMED_BIN" version 2>/dev/null | head -1) pid $DAEMON_PID on unix://$SOCK, network $SUBNET on $BRIDGE"

# ---------------------------------------------------------------- critest

# critest's HTTP checks use Go's default client, which honours proxies.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
cd "$RESULTS" || die "cd $RESULTS"
log "running $CRITEST $* (log: $RESULTS/critest.log)"
"$CRITEST" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" "$@" 2>&1 | tee "$RESULTS/critest.log"
status=${PIPESTATUS[0]}

echo
echo "==================== critest summary ===================="
sed 's/\x1b\[[0-9;]*m//g' "$RESULTS/critest.log" | awk '
	/^Summarizing [0-9]+ Failure/ { show = 1 }
	/^Ran [0-9]+ of [0-9]+ Specs/ { show = 1 }
	show && NF { print }
	/^(PASS|FAIL)/ { show = 0 }
'
echo "critest exit status: $status"
exit "$status"
