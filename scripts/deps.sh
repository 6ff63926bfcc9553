#!/bin/sh
# Installs what `make run` (build) or `make test` (test) needs and is missing,
# with one `apt-get update` and one `apt-get install`. Does nothing when all is there.
set -eu
mode=${1:-build}
need=""

have_pc() { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$1"; }
# Daemons' tools live in /usr/sbin on Debian (haproxy), off a normal user's PATH.
have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
want() { need="$need $1"; }

command -v pkg-config >/dev/null 2>&1 || want pkg-config
command -v cc >/dev/null 2>&1 || want gcc
command -v make >/dev/null 2>&1 || want make
command -v python3 >/dev/null 2>&1 || want python3
have_pc libuv || want libuv1-dev
have_pc openssl || want libssl-dev
have_pc libconfig || want libconfig-dev
have_pc libxcrypt || want libcrypt-dev
have_pc libsystemd || want libsystemd-dev
command -v openssl >/dev/null 2>&1 || want openssl

if [ "$mode" = test ]; then
	have_pc cmocka || want libcmocka-dev
	command -v curl >/dev/null 2>&1 || want curl
	command -v fetchmail >/dev/null 2>&1 || want fetchmail
	command -v getmail >/dev/null 2>&1 || want getmail6
	command -v mpop >/dev/null 2>&1 || want mpop
	have_cmd fail2ban-regex || want fail2ban
	have_cmd haproxy || want haproxy
fi

[ -z "$need" ] && exit 0
echo "deps: installing:$need"
if [ "$(id -u)" != 0 ]; then
	echo "deps: not root; install these packages and run again:$need" >&2
	exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $need
