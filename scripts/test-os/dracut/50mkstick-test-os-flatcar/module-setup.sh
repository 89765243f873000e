#!/bin/bash
# shellcheck disable=SC2154 # dracut provides moddir, initdir and the unit dirs
# dracut module of the flatcar-like mkstick test OS: Flatcar's PXE boot
# contract on Debian, mirroring flatcar/bootengine (branch flatcar-master,
# commit 6c2fba4; the files are named after theirs):
# - dracut/10diskless-generator/diskless-generator: with no usr=/mount.usr=
#   and /usr.squashfs in the initramfs (Flatcar's PXE image cpio carries it),
#   /sysroot is a tmpfs, /sysroot/usr the squashfs (read-only, /usr/local
#   included) and /sysroot/oem a tmpfs;
# - dracut/30ignition/ignition-generator, ignition-setup-pre.sh,
#   ignition-setup.sh: Ignition runs only with flatcar.first_boot= (or
#   coreos.first_boot=), on the platform of flatcar.oem.id= (default metal,
#   qemu under QEMU/KVM; ignition.platform.id= is not read), with
#   usr/share/oem/config.ign of the initramfs as its user config;
# - dracut/99setup-root/initrd-setup-root: the tmpfs root gets its base
#   layout from tmpfiles and /etc an overlay over /usr/share/flatcar/etc;
#   /usr/share/oem is copied to /oem.
# Debian's Ignition 2.14 module (30ignition) supplies Ignition and its stage
# units; this module replaces its generator and adds bootengine's ordering.
# A boot failure dumps the journal and powers off, as in 50mkstick-test-os.

check() {
    # Only when asked for with --add.
    return 255
}

depends() {
    echo systemd systemd-initrd systemd-tmpfiles ignition
}

installkernel() {
    instmods loop squashfs overlay
}

install() {
    local common="$moddir/../50mkstick-test-os"
    inst_multiple mount umount modprobe mkdir cp chmod tail sync wc rm ln \
        journalctl systemctl systemd-tmpfiles systemd-detect-virt mountpoint \
        useradd usermod userdel groupadd groupdel chroot id
    inst_multiple -o chpasswd

    inst_script "$moddir/diskless-generator" \
        "$systemdutildir/system-generators/diskless-generator"
    # Replaces Debian's generator, which reads ignition.firstboot and
    # ignition.platform.id (Flatcar reads neither).
    rm -f "$initdir$systemdutildir/system-generators/ignition-generator"
    inst_script "$moddir/ignition-generator" \
        "$systemdutildir/system-generators/ignition-generator"
    inst_script "$moddir/ignition-setup-pre.sh" /usr/sbin/ignition-setup-pre
    inst_script "$moddir/ignition-setup.sh" /usr/sbin/ignition-setup
    inst_script "$moddir/initrd-setup-root.sh" /usr/sbin/initrd-setup-root
    inst_simple "$moddir/initrd-setup-root.service" \
        "$systemdsystemunitdir/initrd-setup-root.service"
    mkdir -p "$initdir/$systemdsystemunitdir/initrd.target.wants"
    ln_r "$systemdsystemunitdir/initrd-setup-root.service" \
        "$systemdsystemunitdir/initrd.target.wants/initrd-setup-root.service"
    inst_simple "$moddir/ignition-fetch-offline-flatcar.conf" \
        "$systemdsystemunitdir/ignition-fetch-offline.service.d/50-mkstick-flatcar.conf"
    inst_simple "$moddir/ignition-files-flatcar.conf" \
        "$systemdsystemunitdir/ignition-files.service.d/50-mkstick-flatcar.conf"

    # Shared with the coreos-like flavour.
    inst_script "$common/setfiles.sh" /usr/sbin/setfiles
    inst_script "$common/mkstick-failure-dump.sh" /usr/bin/mkstick-failure-dump
    local unit
    for unit in emergency.service dracut-emergency.service; do
        inst_simple "$common/failure-poweroff.conf" \
            "$systemdsystemunitdir/$unit.d/50-mkstick-failure-poweroff.conf"
    done
}
