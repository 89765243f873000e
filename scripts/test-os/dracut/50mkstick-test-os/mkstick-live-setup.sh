#!/bin/sh
# Mount /root.squashfs read-only and a tmpfs for the /sysroot overlay.
# Both live under /run, which systemd carries into the real root.
set -eu

modprobe -a loop squashfs overlay
mkdir -p /run/mkstick-live/lower /run/mkstick-live/rw
mount -t squashfs -o ro,loop /root.squashfs /run/mkstick-live/lower
mount -t tmpfs -o mode=0755 tmpfs /run/mkstick-live/rw
mkdir -p /run/mkstick-live/rw/upper /run/mkstick-live/rw/work
