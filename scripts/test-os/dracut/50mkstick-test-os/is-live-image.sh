#!/bin/sh
# Called by ignition-generator: a live image has no root disk, so Ignition
# skips its diskful targets. As on Fedora CoreOS (fedora-coreos-config
# 35coreos-live/is-live-image.sh), the initramfs's version stamp says so.
test -f /etc/coreos-live-initramfs
