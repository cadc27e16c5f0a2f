#!/usr/bin/env bash
# Installs what building, testing, the demo and the benchmarks need on Debian 12 / Ubuntu 22.04+.
# Idempotent: packages already present are left alone, and apt is only consulted when one is missing.
# Used by ./quickstart (the README's commands, which runs it before make exists), by .ci/run, by
# `make deps` (and the make targets that need it), and by the Vagrantfile.
#
# The BPF object is compiled by one pinned clang major (CLANG_VERSION) so that `make generate`
# reproduces the committed loader/*.o byte for byte; CI fails on any difference.
set -euo pipefail

CLANG_VERSION=${CLANG_VERSION:-16}

packages=(
	"clang-${CLANG_VERSION}" "llvm-${CLANG_VERSION}" # bpf2go: compile and strip the XDP program
	libbpf-dev                                      # source of the vendored bpf/include headers
	bpftool                                         # vmlinux BTF inspection (bpf/include/update.sh)
	iproute2                                        # ip netns / veth for tests, demo and bench
	iptables nftables conntrack                     # netfilter SYNPROXY rules, conntrack counts
	ethtool                                         # checksum offload off on veth senders
	kmod                                            # modprobe for nf_conntrack/nf_synproxy where modular
	make git ca-certificates                        # make: every target; a minimal machine lacks it
	man-db                                          # man -l: the man page's tests (cmd/xsyn-man, deploy/deb)
)

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: must run as root (./quickstart deps runs it with sudo)" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
	echo "install-deps: apt-get not found; install by hand: ${packages[*]}" >&2
	exit 1
fi

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: installing ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# bpffs is where xsyn pins its state; systemd mounts it at boot, minimal machines may not.
if ! mount -t bpf 2>/dev/null | grep -q ' /sys/fs/bpf '; then
	mount -t bpf bpf /sys/fs/bpf
fi

export PATH="$PATH:/usr/local/go/bin" # where the Go installer puts it; sudo's PATH lacks it
if ! command -v go >/dev/null 2>&1; then
	want=$(sed -n 's/^go //p' "$(dirname "$0")/../go.mod")
	tarball="go${want}.linux-$(dpkg --print-architecture).tar.gz"
	echo "install-deps: Go is not installed (need go${want}, from go.mod): download https://go.dev/dl/${tarball}" >&2
	echo "  and unpack it as root: tar -C /usr/local -xzf ${tarball} (/usr/local/go/bin is found without a PATH change)" >&2
	exit 1
fi
echo "install-deps: ok (clang-${CLANG_VERSION}, $(go version | cut -d' ' -f3))"
