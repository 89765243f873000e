#!/bin/bash
# After flatcar/bootengine dracut/30ignition/ignition-setup.sh, PXE case:
# the OEM directory of the initramfs, /usr/share/oem (where an appended
# cpio puts config.ign), gives Ignition its base and user configs. A disk
# install would mount the OEM partition; the test OS has none.
set -e

case "$1" in
    pxe) src=/usr/share/oem ;;
    normal)
        echo "ignition-setup: the flatcar-like test OS has no OEM partition" >&2
        exit 1
        ;;
    *)
        echo "Usage: $0 {normal|pxe}" >&2
        exit 1
        ;;
esac

dst=/usr/lib/ignition
mkdir -p "${dst}/base.d"
if [[ -e "${src}/base/base.ign" ]]; then
    cp "${src}/base/base.ign" "${dst}/base.d/"
fi
if [[ -e "${src}/config.ign" ]]; then
    cp "${src}/config.ign" "${dst}/user.ign"
    echo "ignition-setup: copied ${src}/config.ign to ${dst}/user.ign"
else
    echo "ignition-setup: no ${src}/config.ign"
fi
