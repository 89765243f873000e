#!/bin/bash
# After flatcar/bootengine dracut/99setup-root/initrd-setup-root: fill the
# tmpfs root before Ignition's files stage. The base layout comes from
# tmpfiles (flatcar/baselayout tmpfiles.d/baselayout.conf, here with
# Debian's merged-/usr links), /etc is an overlay over /usr/share/flatcar/etc,
# and the initramfs's /usr/share/oem is copied to /oem. Flatcar creates /var
# with tmpfiles (base_image_var.conf); Debian's packages need their /var
# tree, so the test OS copies the one it keeps in /usr.
set -euo pipefail

mkdir -p /sysroot/etc /sysroot/.etc-work
if ! mountpoint -q /sysroot/etc; then
    mount -t overlay overlay \
        -o lowerdir=/sysroot/usr/share/flatcar/etc,upperdir=/sysroot/etc,workdir=/sysroot/.etc-work,redirect_dir=on,metacopy=off,noatime \
        /sysroot/etc
fi
if [[ ! -e /sysroot/var/lib/dpkg ]]; then
    mkdir -p /sysroot/var
    cp -a /sysroot/usr/share/mkstick-test-os/var/. /sysroot/var/
fi
systemd-tmpfiles --root=/sysroot --create mkstick-test-os-baselayout.conf
if [[ -d /usr/share/oem ]] && mountpoint -q /sysroot/oem; then
    cp -Ra /usr/share/oem/. /sysroot/oem
fi
