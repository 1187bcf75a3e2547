#!/bin/bash
# image.sh builds the test guest's disk image, kernel and initrd once and
# prints the directory holding them. The result is cached under
# $GUEST_CACHE (/var/cache/cri-runtimed-test/guest) by a key over the
# package list and this script, so a change to either builds a new image;
# an unchanged one is reused by every worktree and every `make test`.
#
# Everything comes from Debian's packages (debootstrap from the host's
# mirror, the kernel package unpacked). Needs root, debootstrap and
# e2fsprogs (make guest-deps).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${GUEST_CACHE:-/var/cache/cri-runtimed-test/guest}
SUITE=bookworm
MIRROR=${GUEST_MIRROR:-http://deb.debian.org/debian}
# The disk is sparse and the guest runs on a throw-away overlay of it
# (qemu snapshot=on): the size is what tests may write in one boot.
DISK_SIZE=${GUEST_DISK_SIZE:-8G}

log() { echo "guest image: $*" >&2; }

key=$(cat "$here/packages" "$here/image.sh" | sha256sum | cut -c1-16)
dir=$CACHE/$key
mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9
if [ -f "$dir/ready" ]; then
	touch "$dir/used"
	echo "$dir"
	exit 0
fi

tmp=$(mktemp -d "$CACHE/build.XXXXXX")
root=$tmp/root
trap 'rm -rf "$tmp"' EXIT

start=$(date +%s)
log "building $key (debootstrap $SUITE from $MIRROR)"
# The kernel is unpacked from its package rather than installed: its
# postinst would build a generic initramfs (minutes, and 37 MB to unpack
# at every boot under TCG). A small initrd is built below instead.
list=$(grep -v '^[[:space:]]*#' "$here/packages" | xargs -n1)
kernel_pkgs=$(grep '^linux-image-' <<<"$list" | xargs)
packages=$(grep -v '^linux-image-' <<<"$list" | xargs | tr ' ' ,)
# The debootstrapped tree is kept by the package list alone, so a change
# of the configuration below does not install every package again.
base=$CACHE/base-$(printf '%s %s %s\n' "$SUITE" "$MIRROR" "$packages" | sha256sum | cut -c1-16).tar.zst
if [ -f "$base" ]; then
	mkdir "$root"
	zstd -dc "$base" | tar -x -C "$root"
else
	debootstrap --variant=minbase --include="$packages" "$SUITE" "$root" "$MIRROR" >"$tmp/debootstrap.log" 2>&1 || {
		tail -30 "$tmp/debootstrap.log" >&2
		exit 1
	}
	rm -rf "$root"/var/cache/apt/archives/*.deb
	tar -C "$root" -c . | zstd -q -T0 -o "$base.new" && mv "$base.new" "$base"
	log "debootstrap done after $(($(date +%s) - start)) s"
fi

# kernel_package resolves a meta package (linux-image-amd64) to the
# versioned package it depends on, with the host's apt lists.
kernel_package() {
	local dep
	dep=$(apt-cache depends "$1" 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -1)
	echo "${dep:-$1}"
}
mkdir -p "$tmp/kernel"
: >"$tmp/kernel.packages"
for meta in $kernel_pkgs; do
	pkg=$(kernel_package "$meta")
	if ! (cd "$tmp" && apt-get download -q "$pkg" >/dev/null 2>&1); then
		apt-get update -qq
		pkg=$(kernel_package "$meta")
		(cd "$tmp" && apt-get download -q "$pkg" >/dev/null)
	fi
	dpkg-deb -x "$tmp/$pkg"_*.deb "$tmp/kernel"
	dpkg-deb -f "$tmp/$pkg"_*.deb Package Version | xargs >>"$tmp/kernel.packages"
done
kver=$(ls "$tmp/kernel/lib/modules" | head -1)
mkdir -p "$root/lib/modules"
cp -a "$tmp/kernel/lib/modules/$kver" "$root/lib/modules/"
cp "$tmp/kernel/boot/vmlinuz-$kver" "$tmp/vmlinuz"
chroot "$root" depmod "$kver"

# The initrd: busybox, the modules that reach the root disk (dependencies
# first) and an init that mounts it and hands over to systemd.
moddep=$root/lib/modules/$kver/modules.dep
modules_closure() {
	local m path d
	for m in "$@"; do
		path=$(grep -E "/$m\.ko(\.[a-z]+)?:" "$moddep" | cut -d: -f1)
		[ -n "$path" ] || {
			log "no module $m in $kver"
			exit 1
		}
		for d in $(grep -E "^$path:" "$moddep" | cut -d: -f2); do
			d=${d##*/}
			modules_closure "${d%%.ko*}"
		done
		echo "$path"
	done
}
ird=$tmp/initrd
mkdir -p "$ird/bin" "$ird/lib/modules" "$ird/proc" "$ird/dev" "$ird/root"
cp "$root/bin/busybox" "$ird/bin/busybox"
modules_closure virtio_pci virtio_blk crc32c_generic ext4 | awk '!seen[$0]++' >"$tmp/initrd.modules"
while read -r m; do
	cp "$root/lib/modules/$kver/$m" "$ird/lib/modules/"
	echo "${m##*/}" >>"$ird/modules"
done <"$tmp/initrd.modules"
cat >"$ird/init" <<'EOF'
#!/bin/busybox sh
bb=/bin/busybox
$bb mount -t proc proc /proc
$bb mount -t devtmpfs devtmpfs /dev
for m in $($bb cat /modules); do $bb insmod /lib/modules/$m; done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do
	$bb sleep 0.1
	i=$((i + 1))
done
$bb mount -t ext4 -o rw,noatime /dev/vda /root || {
	echo "initrd: cannot mount /dev/vda"
	exec $bb sh
}
$bb umount /proc
$bb mount --move /dev /root/dev
exec $bb switch_root /root /sbin/init
EOF
chmod 0755 "$ird/init"
(cd "$ird" && find . | "$root/bin/busybox" cpio -o -H newc 2>/dev/null | gzip -1) >"$tmp/initrd.img"

echo guest >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tguest\n::1\tlocalhost\n' >"$root/etc/hosts"
# The initrd mounts the root read-write; an fstab entry would only make
# systemd wait for udev to announce the disk.
: >"$root/etc/fstab"
: >"$root/etc/machine-id"
# Nothing on the console but the tests' output and the boot status; no
# timers or logins that could run in the middle of a test, and none of
# the boot work a test node does not need (each unit costs seconds under
# TCG).
mkdir -p "$root/etc/systemd/journald.conf.d" "$root/etc/systemd/system/multi-user.target.wants"
printf '[Journal]\nStorage=volatile\nForwardToConsole=no\n' >"$root/etc/systemd/journald.conf.d/guest.conf"
for u in getty.target apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
	systemd-timesyncd.service e2scrub_reap.service systemd-logind.service systemd-user-sessions.service \
	modprobe@loop.service modprobe@drm.service modprobe@fuse.service modprobe@efi_pstore.service \
	modprobe@dm_mod.service systemd-update-utmp.service systemd-update-utmp-runlevel.service \
	sys-kernel-debug.mount sys-kernel-tracing.mount systemd-journal-flush.service \
	systemd-sysusers.service systemd-remount-fs.service systemd-pstore.service; do
	ln -sf /dev/null "$root/etc/systemd/system/$u"
done

# guest-run: mounts the host's shares and runs the entry script the host
# put there, on the serial console; its exit status goes back to the host
# through the writable share, then the guest powers off (qemu exits).
cat >"$root/usr/local/sbin/guest-run" <<'EOF'
#!/bin/sh
mkdir -p /mnt/host /mnt/out
opts=trans=virtio,version=9p2000.L,msize=524288
mount -t 9p -o "$opts,ro" hostshare /mnt/host
mount -t 9p -o "$opts,rw" hostout /mnt/out
echo "guest: up after $(cut -d' ' -f1 /proc/uptime) s ($(uname -r), $(stat -fc %T /sys/fs/cgroup))"
status=1
if [ -x /mnt/host/entry ]; then
	/mnt/host/entry
	status=$?
else
	echo "guest: /mnt/host/entry is missing"
fi
echo "$status" >/mnt/out/status
sync
echo "guest: finished with status $status after $(cut -d' ' -f1 /proc/uptime) s"
poweroff -f
EOF
chmod 0755 "$root/usr/local/sbin/guest-run"
cat >"$root/etc/systemd/system/guest-run.service" <<'EOF'
[Unit]
Description=Run the host's tests
After=multi-user.target
[Service]
Type=exec
ExecStart=/usr/local/sbin/guest-run
StandardInput=null
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
TTYReset=no
TTYVHangup=no
[Install]
WantedBy=multi-user.target
EOF
ln -s ../guest-run.service "$root/etc/systemd/system/multi-user.target.wants/guest-run.service"

chroot "$root" dpkg-query -W -f='${Package} ${Version}\n' >"$tmp/packages.lock"
cat "$tmp/kernel.packages" >>"$tmp/packages.lock"
rm -rf "$root"/var/cache/apt/archives/*.deb
mkfs.ext4 -q -F -L guestroot -d "$root" "$tmp/disk.img" "$DISK_SIZE" >&2
rm -rf "$root" "$tmp/kernel" "$tmp"/*.deb "$ird"
mv "$tmp" "$dir.new"
trap - EXIT
rm -rf "$dir"
mv "$dir.new" "$dir"
touch "$dir/ready" "$dir/used"
log "built $dir in $(($(date +%s) - start)) s"
# Images of other package lists or scripts (other branches may still use
# theirs) are removed once unused for two weeks.
for old in "$CACHE"/*/used; do
	[ -n "$(find "$old" -mtime +14 2>/dev/null)" ] && rm -rf "$(dirname "$old")"
done
find "$CACHE" -maxdepth 1 -name 'base-*.tar.zst' -atime +14 -delete
echo "$dir"
