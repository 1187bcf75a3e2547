#!/bin/bash
# boot.sh SHARE OUT boots the test guest under qemu's software emulation
# (TCG: no KVM needed) with two 9p shares: SHARE read-only at /mnt/host,
# which must hold an executable `entry` that the guest runs once systemd is
# up, and OUT writable at /mnt/out. The guest's serial console streams to
# stdout; the exit status is the one entry returned (written by the guest
# to OUT/status), 124 on timeout, 125 when the guest reported nothing.
#
# The guest has no network interface: everything a test needs (registry,
# images, binaries) is inside it or in SHARE.
#
# Environment: GUEST_CPUS (2), GUEST_MEM (MiB, 3072), GUEST_TIMEOUT
# (seconds, 3600), GUEST_CACHE (image cache, see image.sh).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
share=$(realpath "$1")
out=$(realpath "$2")
[ -x "$share/entry" ] || {
	echo "boot.sh: $share/entry is not executable" >&2
	exit 2
}
img=$("$here/image.sh")
rm -f "$out/status"

# qemu writes the disk's throw-away overlay (snapshot=on) to TMPDIR.
export TMPDIR=${TMPDIR:-/var/tmp}
start=$(date +%s%N)
elapsed() {
	local ms=$((($(date +%s%N) - start) / 1000000))
	echo "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
}
# The console, with the wall time at which the guest's systemd started the
# tests (the boot time: firmware, kernel, initrd, systemd).
console() {
	local line
	while IFS= read -r line; do
		printf '%s\n' "$line"
		case $line in
		*"guest: up after"*) echo "boot.sh: guest booted in $(elapsed) s (wall time since qemu started)" ;;
		esac
	done
}
rc=0
timeout -k 10 "${GUEST_TIMEOUT:-3600}" qemu-system-x86_64 \
	-accel tcg,thread=multi -cpu max -smp "${GUEST_CPUS:-2}" -m "${GUEST_MEM:-3072}" \
	-nographic -no-reboot -nic none -nodefaults -serial stdio \
	-kernel "$img/vmlinuz" -initrd "$img/initrd.img" \
	-append "console=ttyS0 systemd.unified_cgroup_hierarchy=1 panic=-1 quiet loglevel=3 systemd.show_status=error" \
	-drive "file=$img/disk.img,format=raw,if=virtio,cache=unsafe,snapshot=on" \
	-virtfs "local,path=$share,mount_tag=hostshare,security_model=none,readonly=on" \
	-virtfs "local,path=$out,mount_tag=hostout,security_model=none" \
	</dev/null | console || rc=${PIPESTATUS[0]}
elapsed=$(elapsed)
if [ "$rc" = 124 ]; then
	echo "boot.sh: the guest did not finish within ${GUEST_TIMEOUT:-3600} s" >&2
	exit 124
fi
if [ ! -s "$out/status" ]; then
	echo "boot.sh: the guest reported no status (qemu exit $rc after $elapsed s)" >&2
	exit 125
fi
status=$(cat "$out/status")
echo "boot.sh: guest finished with status $status after $elapsed s (qemu wall time)" >&2
exit "$status"
