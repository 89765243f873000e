#!/bin/sh
# Boot failed: dump the end of the journal and the failed units to the
# serial console, then power off at once.
out=/dev/console
[ -c /dev/ttyS0 ] && out=/dev/ttyS0
{
    echo
    echo "MKSTICK-TEST-OS-FAILURE: entering emergency mode, dumping the journal"
    echo "----- journalctl -b (tail) -----"
    journalctl -b --no-pager -o short-monotonic 2>&1 | tail -n 150
    echo "----- systemctl --failed -----"
    systemctl --failed --no-pager --no-legend 2>&1
    echo "MKSTICK-TEST-OS-FAILURE: powering off"
} > "$out" 2>&1
sync
systemctl poweroff --force --force
