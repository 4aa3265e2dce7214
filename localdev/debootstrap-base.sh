#!/bin/sh
# Build the Debian base image of the local stack without any registry: debootstrap a minimal
# bookworm from the Debian mirror apt already uses, and import it into the local Docker daemon.
# Usage: localdev/debootstrap-base.sh [IMAGE] [MIRROR]
# Then build with `ARIEL_BASE_IMAGE=IMAGE ariel local up --engine docker`.
set -eu
image="${1:-ariel-base/debian:bookworm}"
mirror="${2:-}"
if [ -z "$mirror" ]; then
    # The first deb.debian.org-style URI of apt's own sources (deb822 or one-line format).
    mirror=$(grep -rhoE '(URIs:|^deb) +https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | grep -v security | awk '{print $2}' | grep -m1 -E '/debian/?$' || true)
    mirror="${mirror:-http://deb.debian.org/debian}"
fi
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image already present"
    exit 0
fi
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
echo "debootstrap bookworm from $mirror"
start=$(date +%s)
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -20 "$root.log"; exit 1; }
rm -f "$root.log"
# What the public debian image sets up: apt sources on deb.debian.org (or the mirror given) and no caches.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import -c 'CMD ["bash"]' - "$image" >/dev/null
echo "base image $image imported in $(( $(date +%s) - start ))s"
