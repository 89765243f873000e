#!/bin/sh
# Mount /root.squashfs read-only and a tmpfs for the /sysroot overlay.
# Both live under /run, which systemd carries into the real root.
set -eu

modprobe -a loop squashfs overlay
mkdir -p /run/mkstick-live/lower /run/mkstick-live/rw
if ! mount -t squashfs -o ro,loop /root.squashfs /run/mkstick-live/lower; then
    echo "mkstick-live-setup: cannot mount /root.squashfs" \
        "($(wc -c </root.squashfs) bytes); if the kernel logged" \
        "'Initramfs unpacking failed', the machine has too little RAM" >&2
    exit 1
fi
mount -t tmpfs -o mode=0755 tmpfs /run/mkstick-live/rw
mkdir -p /run/mkstick-live/rw/upper /run/mkstick-live/rw/work
