# shellcheck shell=bash
# The test node: containerd + runc + CNI, kubelet and kube-proxy in a network namespace of their own,
# joined to the control plane `up` started. Sourced by up, down and lib.sh; not run.
#
# Layout of one control plane with nodes (state dir D, network index K reserved under
# $state_root/nets, node index I):
#   host:   bridge sk8s<K> with 10.250.<K>.1/24; the apiserver listens there (not on 0.0.0.0)
#   node I: netns sstp-k8s-<D's suffix>-n<I> (bound under /run/netns), eth0 10.250.<K>.<10+I>/24 on that bridge,
#           no default route: pods and the runtime cannot reach anything but the cluster;
#           pods in 10.244.<I>.0/24 on the node's cni0, masqueraded toward the host;
#           its own mount namespace (D/nodes/nodeI/mntns): every mount the kubelet and containerd
#           make lives there and is gone when the namespace is;
#           cgroup root /sstp-k8s-<D's suffix>-n<I> in every v1 hierarchy (and the unified one runc uses); the
#           node's own processes in .../node, pods below .../kubepods, so killing every process in
#           the subtree ends shims and containers too.
#   D/nodes/nodeI/containerd.sock is containerd's socket and D/node-bin the runtime binaries (ctr),
#   which tests/images/build uses to import images.
#
# The kubelet rewrites VM-global sysctls (setupKernelTunables). The first node of any control
# plane saves them in $state_root/sysctls.saved; the last one to go restores them.

node_sh_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
node_hierarchies=(cpu cpuacct cpuset memory pids systemd blkio devices freezer unified)
node_sysctls=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
    kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

# node_names DIR K I: sets node_name, node_netns, node_cgroup, node_ip, node_pod_cidr, node_veth.
# The namespace and cgroup carry the state directory's unique suffix, not only K: a teardown of
# one control plane can then never touch another's, even one that reuses K after it.
node_names() {
    local id=${1##*.} k=$2 i=$3
    node_name="node$i"
    node_netns="sstp-k8s-$id-n$i"
    node_cgroup="sstp-k8s-$id-n$i"
    node_ip="10.250.$k.$((10 + i))"
    node_pod_cidr="10.244.$i.0/24"
    node_veth="sk8s${k}n$i"
}

# reserve_net ROOT OWNER_DIR: prints a free network index (1..200) and reserves it for OWNER_DIR.
reserve_net() {
    local root=$1 owner=$2 k
    mkdir -p "$root/nets"
    for (( k = 1; k <= 200; k++ )); do
        # Someone outside this tool may use the subnet or the names.
        ip link show "sk8s$k" >/dev/null 2>&1 && continue
        ip -4 route show "10.250.$k.0/24" 2>/dev/null | grep -q . && continue
        if mkdir "$root/nets/$k" 2>/dev/null; then
            echo "$owner" >"$root/nets/$k/owner"
            echo "$k" >"$owner/net"
            echo "$k"
            return 0
        fi
    done
    echo "up: no free 10.250.K.0/24 network for the node bridge" >&2
    return 1
}

# host_bridge_up K: the host end every node of this control plane plugs into.
host_bridge_up() {
    local k=$1
    ip link add "sk8s$k" type bridge
    ip addr add "10.250.$k.1/24" dev "sk8s$k"
    ip link set "sk8s$k" up
}

# sysctls_hold ROOT OWNER_DIR: the first holder saves the global sysctls the kubelet rewrites.
sysctls_hold() {
    local root=$1 owner=$2 s
    (
        flock 8
        mkdir -p "$root/sysctl-holders"
        if [[ ! -f "$root/sysctls.saved" ]]; then
            for s in "${node_sysctls[@]}"; do
                echo "$s=$(sysctl -n "$s")"
            done >"$root/sysctls.saved.tmp"
            mv "$root/sysctls.saved.tmp" "$root/sysctls.saved"
        fi
        touch "$root/sysctl-holders/$(basename "$owner")"
    ) 8>"$root/sysctl.lock"
}

# sysctls_release ROOT OWNER_DIR: the last holder puts the saved values back.
sysctls_release() {
    local root=$1 owner=$2 line
    [[ -d "$root/sysctl-holders" ]] || return 0
    (
        flock 8
        rm -f "$root/sysctl-holders/$(basename "$owner")"
        if [[ -z "$(ls -A "$root/sysctl-holders" 2>/dev/null)" && -f "$root/sysctls.saved" ]]; then
            while read -r line; do
                if [[ -n "$line" ]]; then sysctl -q -w "$line" >/dev/null 2>&1 || true; fi
            done <"$root/sysctls.saved"
            rm -f "$root/sysctls.saved"
        fi
    ) 8>"$root/sysctl.lock"
}

# node_pki PKI NODE_DIR NAME IP: the node's credentials, signed by the control plane's CA: a kubelet
# client certificate (system:node:NAME in system:nodes, so the Node authorizer applies), its serving
# certificate, and kube-proxy's (system:kube-proxy, which the default RBAC binds to node-proxier).
node_pki() {
    local pki=$1 nd=$2 name=$3 ip=$4
    mkdir -p "$nd/pki"
    (
        cd "$nd/pki" || exit 1
        issue() { # FILE SUBJECT EXTENSIONS...
            local file=$1 subject=$2
            shift 2
            openssl req -newkey rsa:2048 -nodes -keyout "$file.key" -out "$file.csr" \
                -subj "$subject" 2>/dev/null
            printf '%s\n' "$@" >"$file.ext"
            openssl x509 -req -in "$file.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
                -CAcreateserial -days 2 -extfile "$file.ext" -out "$file.crt" 2>/dev/null
            chmod 600 "$file.key"
        }
        issue kubelet-client "/O=system:nodes/CN=system:node:$name" \
            "extendedKeyUsage=clientAuth" "keyUsage=digitalSignature,keyEncipherment"
        issue kubelet-serving "/CN=$name" "subjectAltName=IP:$ip,DNS:$name" \
            "extendedKeyUsage=serverAuth" "keyUsage=digitalSignature,keyEncipherment"
        issue kube-proxy "/CN=system:kube-proxy" \
            "extendedKeyUsage=clientAuth" "keyUsage=digitalSignature,keyEncipherment"
    )
}

# node_kubeconfig FILE SERVER CA CERT KEY
node_kubeconfig() {
    cat >"$1" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: sstp-test
  cluster:
    server: $2
    certificate-authority: $3
users:
- name: node
  user:
    client-certificate: $4
    client-key: $5
contexts:
- name: sstp-test
  context:
    cluster: sstp-test
    user: node
current-context: sstp-test
KUBECONFIG
    chmod 600 "$1"
}

# node_up DIR K I SERVER BIN RTBIN: starts node I of the control plane in DIR and returns once the
# kubelet and kube-proxy run (readiness of the Node is up's to wait for). Uses up's start().
node_up() {
    local dir=$1 k=$2 i=$3 server=$4 bin=$5 rtbin=$6 nd h j
    node_names "$dir" "$k" "$i"
    nd="$dir/nodes/$node_name"
    mkdir -p "$nd"/{containerd,kubelet,pod-logs,cni/net.d,cni/ipam}
    echo "$node_netns" >"$nd/netns"
    echo "$node_cgroup" >"$nd/cgroup"

    # Network: a namespace with one leg on the host bridge and no default route.
    ip netns add "$node_netns"
    ip link add "$node_veth" type veth peer name eth0 netns "$node_netns"
    ip link set "$node_veth" master "sk8s$k" up
    ip -n "$node_netns" addr add "$node_ip/24" dev eth0
    ip -n "$node_netns" link set eth0 up
    ip -n "$node_netns" link set lo up
    # Pods of the other nodes, through their node.
    for j in $(seq 0 $((${NODE_COUNT:-1} - 1))); do
        (( j == i )) && continue
        ip -n "$node_netns" route add "10.244.$j.0/24" via "10.250.$k.$((10 + j))"
    done
    ip netns exec "$node_netns" sysctl -q -w net.ipv4.ip_forward=1

    # A mount namespace of its own, kept by a bind mount (the parent mount must be private, as /
    # is here; make it so for the node directory in case it is not).
    mount --bind "$nd" "$nd"
    mount --make-private "$nd"
    touch "$nd/mntns"
    unshare --mount="$nd/mntns" --propagation private true

    # Cgroups: the root the kubelet manages, in every hierarchy runc touches.
    for h in "${node_hierarchies[@]}"; do
        [[ -d "/sys/fs/cgroup/$h" ]] || continue
        mkdir -p "/sys/fs/cgroup/$h/$node_cgroup/node"
    done
    local c
    for c in "/sys/fs/cgroup/cpuset/$node_cgroup" "/sys/fs/cgroup/cpuset/$node_cgroup/node"; do
        cat /sys/fs/cgroup/cpuset/cpuset.cpus >"$c/cpuset.cpus"
        cat /sys/fs/cgroup/cpuset/cpuset.mems >"$c/cpuset.mems"
    done

    node_pki "$dir/pki" "$nd" "$node_name" "$node_ip"
    node_kubeconfig "$nd/kubelet.kubeconfig" "$server" "$dir/pki/ca.crt" \
        "$nd/pki/kubelet-client.crt" "$nd/pki/kubelet-client.key"
    node_kubeconfig "$nd/kube-proxy.kubeconfig" "$server" "$dir/pki/ca.crt" \
        "$nd/pki/kube-proxy.crt" "$nd/pki/kube-proxy.key"
    # Pods must never see the host's resolver (it is not reachable from the node, and a pod that
    # tries it hangs for its timeout); there is no cluster DNS either.
    echo "# the test node has no DNS" >"$nd/resolv.conf"

    node_containerd_config "$nd" "$rtbin"
    node_cni_config "$nd" "$node_pod_cidr"
    node_kubelet_config "$nd" "$dir/pki" "$node_ip"
    node_proxy_config "$nd" "$node_name"

    # The node's processes join its cgroup (pids tracks them all, shims included) before exec.
    # (up's start() adds the parent-death signal or the session; every step here execs.)
    # shellcheck disable=SC2016 # expanded by that sh
    local enter=(nsenter --net="/run/netns/$node_netns" --mount="$nd/mntns" --
        env PATH="$rtbin:$PATH"
        sh -c 'echo $$ >"/sys/fs/cgroup/pids/$0/node/cgroup.procs" && exec "$@"' "$node_cgroup")
    start "$node_name-containerd" "${enter[@]}" "$rtbin/containerd" --config "$nd/containerd.toml"
    local deadline=$(( $(date +%s) + 60 ))
    until "$rtbin/ctr" --address "$nd/containerd.sock" version >/dev/null 2>&1; do
        kill -0 "$(cat "$dir/$node_name-containerd.pid")" 2>/dev/null || fail "containerd of $node_name exited"
        (( $(date +%s) < deadline )) || fail "containerd of $node_name not serving within 60s"
        sleep 0.2
    done
    start "$node_name-kubelet" "${enter[@]}" "$bin/kubelet" \
        --config="$nd/kubelet.yaml" \
        --kubeconfig="$nd/kubelet.kubeconfig" \
        --root-dir="$nd/kubelet" \
        --hostname-override="$node_name" \
        --node-ip="$node_ip" \
        --v=1
    start "$node_name-kube-proxy" "${enter[@]}" "$bin/kube-proxy" \
        --config="$nd/kube-proxy.yaml" --v=1
}

node_containerd_config() {
    local nd=$1 rtbin=$2
    local pause_image
    # shellcheck source=../images/versions.env
    pause_image=$(. "$node_sh_dir/../images/versions.env" && echo "$PAUSE_IMAGE")
    cat >"$nd/containerd.toml" <<TOML
# containerd for one test node. Everything it writes is under $nd; nothing is pulled (the node has
# no route out; images are imported by tests/images/build).
version = 4
root = '$nd/containerd/root'
state = '$nd/containerd/state'
imports = []

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = '$nd/containerd.sock'
  [plugins.'io.containerd.server.v1.ttrpc']
    address = '$nd/containerd.sock.ttrpc'
  [plugins.'io.containerd.server.v1.debug']
    address = ''
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.internal.v1.opt']
    path = '$nd/containerd/opt'
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$pause_image'
  [plugins.'io.containerd.cri.v1.runtime']
    # No CAP_SYS_RESOURCE on this machine: negative oom_score_adj (Guaranteed pods, pause) would
    # fail every container; clamp instead.
    restrict_oom_score_adj = true
    # hugetlb is on the unified hierarchy here, not v1.
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    # Pod network namespaces under the state directory, not /var/run/netns.
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$rtbin/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$rtbin']
      conf_dir = '$nd/cni/net.d'
  [plugins.'io.containerd.grpc.v1.cri']
    disable_tcp_service = true
    stream_server_address = '127.0.0.1'
TOML
}

node_cni_config() {
    local nd=$1 cidr=$2
    cat >"$nd/cni/net.d/10-sstp-pods.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "sstp-pods",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$nd/cni/ipam",
        "ranges": [[{ "subnet": "$cidr" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
JSON
}

node_kubelet_config() {
    local nd=$1 pki=$2 ip=$3 cgroup
    cgroup=$(cat "$nd/cgroup")
    cat >"$nd/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# tests/k8s/node.sh explains each choice; ../shared/reference/real-node.md has the measurements.
address: $ip
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $nd/pki/kubelet-serving.crt
tlsPrivateKeyFile: $nd/pki/kubelet-serving.key
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $pki/ca.crt }
authorization: { mode: Webhook }
containerRuntimeEndpoint: unix://$nd/containerd.sock
# This machine is cgroup v1 (hybrid) without systemd.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$cgroup
cgroupsPerQOS: true
enforceNodeAllocatable: [pods]
failSwapOn: false
# The gateway's pod sysctl way needs this; the kubelet refuses pods asking for unsafe sysctls
# that are not listed.
allowedUnsafeSysctls: [net.ipv4.ip_forward]
resolvConf: $nd/resolv.conf
podLogsDir: $nd/pod-logs
# A shared disk: never evict or collect images because of someone else's files.
imageGCHighThresholdPercent: 100
evictionHard:
  nodefs.available: "0%"
  nodefs.inodesFree: "0%"
  imagefs.available: "0%"
  imagefs.inodesFree: "0%"
serializeImagePulls: false
protectKernelDefaults: false
YAML
}

node_proxy_config() {
    local nd=$1 name=$2
    cat >"$nd/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $nd/kube-proxy.kubeconfig
hostnameOverride: $name
mode: nftables
clusterCIDR: 10.244.0.0/16
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# nf_conntrack_max is read-only inside a network namespace; 0 leaves it alone (as kind and k3s do).
conntrack:
  maxPerCore: 0
nftables:
  minSyncPeriod: 1s
YAML
}

# node_kill_all CGROUP: SIGKILLs every process in the node's cgroup subtree until none is left.
node_kill_all() {
    local cgroup=$1 base="/sys/fs/cgroup/pids/$1" tries pids
    [[ -d "$base" ]] || return 0
    for (( tries = 0; tries < 100; tries++ )); do
        pids=$(find "$base" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
        [[ -z "$pids" ]] && return 0
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.1
    done
    echo "down: processes left in cgroup $cgroup: $pids" >&2
}

# node_down ND: removes node ND (a D/nodes/nodeI directory): processes, mounts, cgroups, namespace.
node_down() {
    local nd=$1 name netns cgroup h pid
    name=$(basename "$nd")
    netns=$(cat "$nd/netns" 2>/dev/null || true)
    cgroup=$(cat "$nd/cgroup" 2>/dev/null || true)
    local dir
    dir=$(dirname "$(dirname "$nd")")
    # The kubelet first, so that it restarts nothing, then everything else in the node's cgroup.
    for c in kube-proxy kubelet containerd; do
        pid=$(cat "$dir/$name-$c.pid" 2>/dev/null || true)
        [[ -n "$pid" ]] && { kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true; }
    done
    [[ -n "$cgroup" ]] && node_kill_all "$cgroup"
    # The mount namespace dies with its last process once unbound; its mounts with it.
    umount "$nd/mntns" 2>/dev/null || umount -l "$nd/mntns" 2>/dev/null || true
    umount "$nd" 2>/dev/null || umount -l "$nd" 2>/dev/null || true
    if [[ -n "$netns" ]]; then ip netns del "$netns" 2>/dev/null || true; fi
    if [[ -n "$cgroup" ]]; then
        for h in "${node_hierarchies[@]}"; do
            [[ -d "/sys/fs/cgroup/$h/$cgroup" ]] || continue
            # Depth first: a cgroup goes only once its children have.
            find "/sys/fs/cgroup/$h/$cgroup" -depth -type d -exec rmdir {} + 2>/dev/null || true
        done
    fi
    # The kubelet links container logs from a fixed /var/log/containers; drop the links to ours.
    local link
    for link in /var/log/containers/*.log; do
        [[ -L "$link" ]] || continue
        case "$(readlink "$link")" in "$nd"/*) rm -f "$link" ;; esac
    done
}

# nodes_down DIR: every node of the control plane in DIR, and the sysctls they changed.
nodes_down() {
    local dir=$1 nd
    for nd in "$dir"/nodes/node*; do
        [[ -d "$nd" ]] && node_down "$nd"
    done
    sysctls_release "$(dirname "$dir")" "$dir"
}

# net_down DIR: the host bridge and its network reservation. Only once the control plane is
# stopped: the apiserver listens on the bridge, and without that address its own loopback
# client would be routed off the machine and its shutdown would hang retrying.
net_down() {
    local dir=$1 root k
    root=$(dirname "$dir")
    [[ -f "$dir/net" ]] || return 0
    k=$(cat "$dir/net")
    ip link del "sk8s$k" 2>/dev/null || true
    rm -rf "${root:?}/nets/$k"
}
