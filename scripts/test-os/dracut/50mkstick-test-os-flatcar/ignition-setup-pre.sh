#!/bin/bash
# After flatcar/bootengine dracut/30ignition/ignition-setup-pre.sh: the
# platform Ignition gets is flatcar.oem.id= (or coreos.oem.id=), by default
# metal, or qemu when systemd-detect-virt says kvm or qemu. Flatcar never
# reads ignition.platform.id=.
set -e

read -r -a cmdline </proc/cmdline
cmdline_arg() {
    local name="$1" value="$2" arg
    for arg in "${cmdline[@]}"; do
        if [[ "${arg%%=*}" == "${name}" ]]; then
            value="${arg#*=}"
        fi
    done
    echo "${value}"
}

oem_id=metal
if [[ $(systemd-detect-virt || true) =~ ^(kvm|qemu)$ ]]; then
    oem_id=qemu
fi
oem_cmdline=$(cmdline_arg flatcar.oem.id "${oem_id}")
if [[ "${oem_id}" == "${oem_cmdline}" ]]; then
    oem_cmdline=$(cmdline_arg coreos.oem.id "${oem_id}")
fi
case "${oem_cmdline}" in
    ec2) oem_cmdline=aws ;;
    gce) oem_cmdline=gcp ;;
    pxe) oem_cmdline=metal ;;
esac
echo "ignition-setup-pre: Ignition platform ${oem_cmdline}"
{
    echo "OEM_ID=${oem_cmdline}"
    echo "PLATFORM_ID=${oem_cmdline}"
} >/run/ignition.env
