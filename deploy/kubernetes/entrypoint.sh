#!/bin/sh
# xsyn-entrypoint: the image's entrypoint. It prepares an unprivileged container for xsyn, then
# runs its arguments ("xsyn attach eth0 ...") in its place. Two things a host's root shell has
# and such a container lacks:
#
# 1. The node's iptables backend. The image carries both iptables-nft and iptables-legacy;
#    XSYN_IPTABLES_BACKEND (nft, legacy or auto) puts one of them first in PATH as iptables and
#    ip6tables, which is what xsyn runs. It must be the backend the node's own firewall and
#    kube-proxy use (deploy/kubernetes/README.md, "iptables backend").
#
# 2. Writable net sysctls. A container's /proc/sys is read-only unless it is privileged, and
#    runc refuses any mount inside /proc, so the pod mounts the node's /proc/sys/net at
#    /host/proc/sys/net (as Cilium does) and this script binds it over /proc/sys/net, inside the
#    container's own mount namespace, where xsyn writes its sysctls. Needs CAP_SYS_ADMIN (which
#    is why attach and detach have it) and an AppArmor profile that allows mount (the pod asks
#    for Unconfined). serve writes no sysctl and has neither: it skips the bind.
#    The files of /proc/sys/net belong to the network namespace of whoever opens them: with
#    hostNetwork, the node's.
set -eu

prog=xsyn-entrypoint
libdir=${XSYN_LIBDIR:-/usr/local/lib/xsyn}

die() {
	echo "$prog: $*" >&2
	exit 1
}

# rules counts the rules (lines starting with -A) of one backend; 0 when it cannot be read
# (iptables-legacy needs CAP_NET_RAW).
rules() {
	{ "$libdir/iptables-$1/iptables-save" 2>/dev/null; "$libdir/iptables-$1/ip6tables-save" 2>/dev/null; } |
		grep -c '^-A' || true
}

# hinted says whether kubelet's hint chains (the way kube-proxy's iptables-wrapper tells the
# node's backend) are in backend $1.
hinted() {
	"$libdir/iptables-$1/iptables-save" -t mangle 2>/dev/null | grep -Eq '^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY)'
}

backend=${XSYN_IPTABLES_BACKEND:-nft}
case $backend in
nft | legacy) ;;
auto)
	# Reading the legacy tables takes a raw socket: without CAP_NET_RAW they would look empty
	# and a legacy node would be taken for an nft one.
	"$libdir/iptables-legacy/iptables-save" >/dev/null 2>&1 ||
		die "XSYN_IPTABLES_BACKEND=auto cannot read the iptables-legacy tables (that needs CAP_NET_RAW): add NET_RAW to the container, or name the backend (nft or legacy)"
	if hinted nft; then
		backend=nft
	elif hinted legacy; then
		backend=legacy
	elif [ "$(rules legacy)" -gt "$(rules nft)" ]; then
		backend=legacy
	else
		backend=nft
	fi
	echo "$prog: XSYN_IPTABLES_BACKEND=auto: using iptables-$backend" >&2
	;;
*) die "XSYN_IPTABLES_BACKEND=$backend: want nft, legacy or auto" ;;
esac
[ -x "$libdir/iptables-$backend/iptables" ] || die "no iptables-$backend in $libdir/iptables-$backend"
PATH=$libdir/iptables-$backend:$PATH
export PATH

if [ -d /host/proc/sys/net ] && ! [ -w /proc/sys/net/ipv4/tcp_syncookies ]; then
	mount --bind /host/proc/sys/net /proc/sys/net ||
		die "cannot bind /host/proc/sys/net over the read-only /proc/sys/net (needs CAP_SYS_ADMIN and an AppArmor profile allowing mount)"
fi

[ $# -gt 0 ] || die "usage: $prog xsyn COMMAND [ARGS]"
exec "$@"
