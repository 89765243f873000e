#!/bin/sh
# Boot failed: dump the failed units, their logs and the end of the journal
# to the serial console, then power off at once.
out=/dev/console
[ -c /dev/ttyS0 ] && out=/dev/ttyS0
{
    echo
    echo "MKSTICK-TEST-OS-FAILURE: boot failed, dumping the journal"
    echo "----- systemctl --failed -----"
    systemctl --failed --no-pager --no-legend --plain 2>&1
    systemctl --failed --no-legend --plain 2>/dev/null | while read -r unit _; do
        echo "----- journalctl -u $unit (tail) -----"
        journalctl -b --no-pager -o short-monotonic -u "$unit" 2>&1 | tail -n 40
    done
    echo "----- journalctl -b -p warning (tail) -----"
    journalctl -b --no-pager -o short-monotonic -p warning 2>&1 | tail -n 40
    echo "----- journalctl -b (tail) -----"
    journalctl -b --no-pager -o short-monotonic 2>&1 | tail -n 100
    echo "MKSTICK-TEST-OS-FAILURE: powering off"
} > "$out" 2>&1
sync
systemctl poweroff --force --force
