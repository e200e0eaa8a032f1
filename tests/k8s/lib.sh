# shellcheck shell=bash
# Helpers shared by up and down; sourced, not run.

# shellcheck source=node.sh
. "$(dirname "${BASH_SOURCE[0]}")/node.sh"

# reserve_port ROOT OWNER_DIR: prints a free loopback TCP port and reserves it for OWNER_DIR, so that
# several control planes started at once never pick the same one. A reservation is a directory under
# ROOT/ports (mkdir is atomic) naming its owner; down and reap_stale release it.
reserve_port() {
    local root=$1 owner=$2 port tries=0
    while (( tries++ < 200 )); do
        # Below Linux's default ephemeral range (32768-60999), where outgoing connections take theirs.
        port=$(( 10000 + (RANDOM * 32768 + RANDOM) % 22000 ))
        # Someone outside this tool may hold it.
        [[ -z "$(ss -Htan "( sport = :$port )" 2>/dev/null)" ]] || continue
        if mkdir "$root/ports/$port" 2>/dev/null; then
            echo "$owner" >"$root/ports/$port/owner"
            echo "$port" >>"$owner/ports"
            echo "$port"
            return 0
        fi
    done
    echo "up: no free port found" >&2
    return 1
}

# release_ports DIR: drops the port reservations DIR holds.
release_ports() {
    local dir=$1 root port
    root=$(dirname "$dir")
    [[ -f "$dir/ports" ]] || return 0
    while read -r port; do
        [[ -n "$port" ]] && rm -rf "${root:?}/ports/$port"
    done <"$dir/ports"
}

# stop_components DIR: stops the control plane components in reverse order of their start, each with SIGTERM (to
# its process group when it leads one) and SIGKILL after 10 seconds. The order matters: an apiserver
# whose etcd is already gone hangs in its graceful shutdown.
stop_components() {
    local dir=$1 name pid i
    for name in kube-scheduler kube-controller-manager kube-apiserver etcd; do
        [[ -f "$dir/$name.pid" ]] || continue
        pid=$(cat "$dir/$name.pid")
        [[ -n "$pid" ]] || continue
        # Detached components lead their own session and group; foreground ones are plain children.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || continue
        for (( i = 0; i < 100; i++ )); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
}

# reap_stale ROOT: removes state left by a foreground `up` that was killed before it could clean up
# (its components died with it through the parent-death signal; only files and reservations remain).
reap_stale() {
    local root=$1 d pid
    for d in "$root"/cp.*; do
        [[ -d "$d" && -f "$d/up.pid" ]] || continue
        [[ "$(cat "$d/foreground" 2>/dev/null)" == true ]] || continue
        pid=$(cat "$d/up.pid")
        kill -0 "$pid" 2>/dev/null && continue
        # Nodes first: containerd's shims and the pods do not die with up.
        nodes_down "$d"
        stop_components "$d"
        net_down "$d"
        release_ports "$d"
        rm -rf "$d"
    done
}
