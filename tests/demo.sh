#!/usr/bin/env bash
# ftl demo (what `make demo` runs after `make deps build`): wrap memcached,
# talk to it, look at it with `ftl ps`, checkpoint it while it serves, then
# checkpoint, kill and restore it under the feet of an open client
# connection that goes on working, stop it, and show nothing is left.
# Needs root (pid and mount namespaces). Uses a private FTL_HOME unless one
# is set, and a free loopback port.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ftl=${FTL_BIN:-$root/bin/ftl}
export FTL_SHIM=${FTL_SHIM:-$root/bin/libftl.so}
name=demo-mc

if [[ $(id -u) != 0 ]]; then echo "demo: run as root (ftl creates pid and mount namespaces)" >&2; exit 1; fi
for f in "$ftl" "$FTL_SHIM"; do
	[[ -e $f ]] || { echo "demo: $f missing: run 'make build' first" >&2; exit 1; }
done
command -v memcached >/dev/null || { echo "demo: memcached missing: run 'make deps' first" >&2; exit 1; }

own_home=
if [[ -z ${FTL_HOME:-} ]]; then
	FTL_HOME=$(mktemp -d /tmp/ftl-demo.XXXXXX)
	own_home=$FTL_HOME
fi
export FTL_HOME

cleanup() {
	exec 3>&- 2>/dev/null || true
	"$ftl" kill "$name" >/dev/null 2>&1 || true
	[[ -n $own_home ]] && rm -rf "$own_home"
}
trap cleanup EXIT

# A free loopback port: nothing answers a connect to it.
port=
for _ in $(seq 1 50); do
	p=$((20000 + RANDOM % 30000))
	if ! (exec 9<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[[ -n $port ]] || { echo "demo: no free port found" >&2; exit 1; }

step() { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "wrap memcached (state under $FTL_HOME)"
show "$ftl" run --detach --name "$name" -- memcached -l 127.0.0.1 -p "$port" -t 4 -U 0 -u root
for _ in $(seq 1 100); do
	(exec 9<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.05
done

step "talk to it over TCP (bash /dev/tcp)"
exec 3<>"/dev/tcp/127.0.0.1/$port"
request() { # send one memcached command, print it and its reply of $2 lines
	printf '%b' "$1" >&3
	printf '> %s\n' "$(printf '%b' "$1" | head -1 | tr -d '\r')"
	local line i
	for ((i = 0; i < $2; i++)); do
		IFS= read -r -t 5 line <&3 || { echo "demo: no reply from memcached" >&2; exit 1; }
		printf '< %s\n' "${line%$'\r'}"
	done
}
request 'set greeting 0 0 11\r\nhello world\r\n' 1
request 'set counter 0 0 1\r\n7\r\n' 1
request 'incr counter 35\r\n' 1
request 'get greeting counter\r\n' 5

step "what ftl sees (the connection is still open)"
show "$ftl" ps
echo
show "$ftl" ps "$name"

step "checkpoint it while it serves (it pauses only while its state is read)"
show "$ftl" checkpoint "$name" --leave-running --dir "$FTL_HOME/live.img"
request 'incr counter 1\r\n' 1

step "checkpoint it and kill it, with the client connection still open"
show "$ftl" checkpoint "$name" --dir "$FTL_HOME/mc.img"
show "$ftl" ps
show "$ftl" image inspect "$FTL_HOME/mc.img"

step "restore it: same pids, same memory, the same TCP connection"
show "$ftl" restore --detach --name "$name" "$FTL_HOME/mc.img"
request 'get greeting counter\r\n' 5
request 'incr counter 1\r\n' 1
show "$ftl" ps "$name"

pids=$("$ftl" ps "$name" --json | sed -n 's/.*"host_pid": \([0-9]*\).*/\1/p; s/.*"init_pid": \([0-9]*\).*/\1/p' | tr '\n' ' ' | sed 's/ *$//')
exec 3>&-

step "stop it"
show "$ftl" stop "$name"

step "nothing is left"
show "$ftl" ps
left=0
for pid in $pids; do
	if [[ -e /proc/$pid ]] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; then
		echo "process $pid is still alive"; left=1
	fi
done
if [[ -e $FTL_HOME/run/$name ]]; then echo "$FTL_HOME/run/$name still exists"; left=1; fi
if [[ $left == 0 ]]; then
	echo "processes $pids: gone; $FTL_HOME/run/$name (spec, shared-memory region): gone"
	echo "demo: OK"
else
	echo "demo: FAILED"; exit 1
fi
