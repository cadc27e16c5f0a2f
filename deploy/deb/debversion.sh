#!/bin/sh
# debversion.sh VERSION: the Debian package version of VERSION, a `git describe --tags --always
# --dirty` string (the Makefile's VERSION), as `make deb` uses it. Debian versions start with a
# digit, hold only [A-Za-z0-9.+~], and sort by dpkg's rules; git describe strings need not:
#
#   v1.2.3                    1.2.3
#   v1.2.3-4-gabcdef0         1.2.3+4.gabcdef0         4 commits after 1.2.3: after it, before 1.2.4
#   v1.2.3-4-gabcdef0-dirty   1.2.3+4.gabcdef0.dirty   and uncommitted changes
#   v1.2.3-dirty              1.2.3+0.dirty            after 1.2.3, before 1.2.3+1...
#   v1.3.0-rc1                1.3.0~rc1                a pre-release: before 1.3.0
#   abcdef0                   0~gabcdef0               no tag yet: before any release
#   dev                       0~dev
set -eu
v=${1:?usage: debversion.sh VERSION}
dirty=
case $v in *-dirty) v=${v%-dirty} dirty=dirty ;; esac
v=$(printf '%s\n' "$v" | sed -E '
	s/^v([0-9])/\1/
	s/^([0-9a-f]{7,})$/g\1/
	s/-([0-9]+)-(g[0-9a-f]+)$/+\1.\2/
	s/-/~/g
	s/[^A-Za-z0-9.+~]/./g
	s/^([^0-9])/0~\1/')
if [ -n "$dirty" ]; then
	case $v in *+*) v=$v.$dirty ;; *) v=$v+0.$dirty ;; esac
fi
printf '%s\n' "$v"
