#!/usr/bin/env bash
# Re-vendors the libbpf headers the XDP program includes, from Debian's libbpf-dev package.
# The version is pinned here: bump LIBBPF_VERSION, run this script, commit the result together with
# the regenerated loader objects (`make generate`).
#
# Kernel types do not come from here: bpf/kernel.h is a hand-trimmed CO-RE subset of vmlinux.h
# (every struct there is relocated at load time against the running kernel's BTF).
set -euo pipefail

LIBBPF_VERSION="1:1.1.2-0+deb12u1"
headers=(bpf_helpers.h bpf_helper_defs.h bpf_endian.h bpf_core_read.h)

cd "$(dirname "$0")"
have=$(dpkg-query -W -f='${Version}' libbpf-dev 2>/dev/null || true)
if [ "$have" != "$LIBBPF_VERSION" ]; then
	echo "update.sh: need libbpf-dev $LIBBPF_VERSION, have '${have:-none}'" >&2
	echo "update.sh: apt-get install libbpf-dev=$LIBBPF_VERSION (or change LIBBPF_VERSION)" >&2
	exit 1
fi
for h in "${headers[@]}"; do
	cp "/usr/include/bpf/$h" "$h"
done
cp /usr/share/doc/libbpf-dev/copyright LICENSE.libbpf
echo "update.sh: vendored ${headers[*]} from libbpf-dev $LIBBPF_VERSION"
