#!/bin/sh
# Called by ignition-generator: a live image has no root disk, so Ignition
# skips its diskful targets.
test -e /root.squashfs
