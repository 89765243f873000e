#!/bin/sh
# Check the live rootfs against the initramfs, then mount /root.squashfs
# read-only and a tmpfs for the /sysroot overlay. Both live under /run,
# which systemd carries into the real root.
#
# The version check is Fedora CoreOS's (fedora-coreos-config
# overlay.d/05core/usr/lib/dracut/modules.d/35coreos-live/
# coreos-livepxe-rootfs.sh): rootfs.img carries etc/coreos-live-rootfs, the
# initramfs etc/coreos-live-initramfs; a rootfs from another release, or
# none, fails the boot with the same words.
set -eu

if [ -f /etc/coreos-live-rootfs ]; then
    initramfs_ver=$(cat /etc/coreos-live-initramfs)
    rootfs_ver=$(cat /etc/coreos-live-rootfs)
    if [ "$initramfs_ver" != "$rootfs_ver" ]; then
        echo "Found initramfs version $initramfs_ver but rootfs version $rootfs_ver." >&2
        echo "Please fix your PXE configuration." >&2
        exit 1
    fi
else
    echo "No rootfs image found.  Modify your PXE configuration to add the rootfs" >&2
    echo "image as a second initrd, or use the coreos.live.rootfs_url= kernel parameter" >&2
    echo "to specify an HTTP or HTTPS URL to the rootfs." >&2
    exit 1
fi

modprobe -a loop squashfs overlay
mkdir -p /run/mkstick-live/lower /run/mkstick-live/rw
if ! mount -t squashfs -o ro,loop /root.squashfs /run/mkstick-live/lower; then
    echo "mkstick-live-setup: cannot mount /root.squashfs" \
        "($(wc -c </root.squashfs 2>/dev/null || echo 0) bytes); if the kernel logged" \
        "'Initramfs unpacking failed', the machine has too little RAM" >&2
    exit 1
fi
mount -t tmpfs -o mode=0755 tmpfs /run/mkstick-live/rw
mkdir -p /run/mkstick-live/rw/upper /run/mkstick-live/rw/work
