#!/bin/bash
# shellcheck disable=SC2154 # dracut provides moddir, initdir and the unit dirs
# dracut module of the mkstick test OS: the CoreOS live-boot contract on
# Debian. It builds /sysroot from /root.squashfs (unpacked by the kernel from
# rootfs.img), hands /config.ign to Ignition like FCOS's
# coreos-ignition-setup-user, and turns any boot failure into a journal dump
# on the serial console followed by a power-off.

check() {
    # Only when asked for with --add.
    return 255
}

depends() {
    echo systemd systemd-initrd ignition
}

installkernel() {
    instmods loop squashfs overlay
}

install() {
    inst_multiple mount umount modprobe mkdir cp chmod tail sync wc \
        journalctl systemctl useradd usermod userdel groupadd groupdel \
        chroot id
    inst_multiple -o chpasswd

    # The live version stamp, as coreos-assembler puts it in Fedora CoreOS's
    # live initramfs; build-test-os passes the version.
    if [ -z "${MKSTICK_LIVE_VERSION:-}" ]; then
        derror "mkstick-test-os: MKSTICK_LIVE_VERSION is not set"
        return 1
    fi
    mkdir -p "$initdir/etc"
    echo "$MKSTICK_LIVE_VERSION" > "$initdir/etc/coreos-live-initramfs"

    inst_script "$moddir/mkstick-live-generator" \
        "$systemdutildir/system-generators/mkstick-live-generator"
    inst_script "$moddir/mkstick-live-setup.sh" /usr/sbin/mkstick-live-setup
    inst_script "$moddir/is-live-image.sh" /usr/bin/is-live-image
    # Debian builds Ignition with SELinux relabelling on; the test OS has no
    # SELinux, so relabelling is a no-op.
    inst_script "$moddir/setfiles.sh" /usr/sbin/setfiles
    inst_script "$moddir/mkstick-failure-dump.sh" /usr/bin/mkstick-failure-dump

    inst_script "$moddir/coreos-ignition-setup-user.sh" \
        /usr/sbin/coreos-ignition-setup-user
    inst_simple "$moddir/coreos-ignition-setup-user.service" \
        "$systemdsystemunitdir/coreos-ignition-setup-user.service"
    mkdir -p "$initdir/$systemdsystemunitdir/ignition-complete.target.requires"
    ln_r "$systemdsystemunitdir/coreos-ignition-setup-user.service" \
        "$systemdsystemunitdir/ignition-complete.target.requires/coreos-ignition-setup-user.service"

    local unit
    for unit in emergency.service dracut-emergency.service; do
        inst_simple "$moddir/failure-poweroff.conf" \
            "$systemdsystemunitdir/$unit.d/50-mkstick-failure-poweroff.conf"
    done
}
