#!/bin/sh
# No-op setfiles: Debian's Ignition relabels files it writes, but the test
# OS has no SELinux policy.
exit 0
