#!/bin/sh
# Mirrors Fedora CoreOS's coreos-ignition-setup-user on a live image: the
# config initrd put config.ign at the initramfs root; Ignition's system
# provider reads /usr/lib/ignition/user.ign.
set -eu

if [ -f /config.ign ]; then
    mkdir -p /usr/lib/ignition
    cp /config.ign /usr/lib/ignition/user.ign
    chmod 0600 /usr/lib/ignition/user.ign
    echo "coreos-ignition-setup-user: copied /config.ign to /usr/lib/ignition/user.ign"
else
    echo "coreos-ignition-setup-user: no /config.ign"
fi
