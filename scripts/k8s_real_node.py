"""A real Node for the test cluster: containerd + a kubelet (``k8s-test-cluster up --kubelet``).

Used by scripts/k8s-test-cluster (standard library only).  The kubelet is built
from the same k8s.io/kubernetes module as the apiserver; containerd and runc are
Debian's.  It registers as ``system:node:<name>`` (its own client certificate,
group ``system:nodes``, the apiserver's Node authorizer) beside the kwok Nodes,
with a serving certificate from the cluster CA, so ``kubectl logs``/``exec``
work.  Pods get addresses from a CNI bridge of their own (``fgtest0``,
10.89.0.0/24, no masquerading).  Services work as on any cluster: kube-proxy
(iptables mode, built from the same module) programs the ClusterIPs, including
``kubernetes.default`` (the apiserver, advertised on the node's address), and
CoreDNS (built with only the plugins a cluster DNS needs) answers
``*.svc.cluster.local`` behind the ``kube-dns`` Service (10.0.0.10), so the
chart's pods find each other and the apiserver as they would anywhere.  The real
Node is the cluster's control host (it carries no taint; kwok's ``control-01`` is
not made) and also an edge host (``facegrid.io/edge``) where a camera can run.

The kubelet and CNI change the machine: sysctls (vm.overcommit_memory,
kernel.panic, kernel.panic_on_oops, net.ipv4.ip_forward ...), iptables chains, a
bridge and veth links, network namespaces and mounts, cgroups.  ``snapshot``
records all of it before anything starts; ``stop`` stops the pods, the kubelet
and containerd, then puts every one back: removes links, netns, mounts and
cgroups that were not there before, restores the iptables tables and sysctls.
See docs/k8s-test-cluster.md "A real Node".
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import time
from pathlib import Path

NAME = "real-01"
BRIDGE = "fgtest0"
POD_SUBNET = "10.89.0.0/24"
#: The cluster DNS Service's address (inside --service-cluster-ip-range 10.0.0.0/24).
DNS_SERVICE_IP = "10.0.0.10"
CLUSTER_DOMAIN = "cluster.local"
SYSCTLS = ["vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
           "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward",
           "net.ipv4.conf.all.route_localnet", "net.bridge.bridge-nf-call-iptables",
           "net.bridge.bridge-nf-call-ip6tables", "net.ipv6.conf.all.forwarding"]
TABLES = ["filter", "nat", "mangle", "raw"]
TOOLS = {"containerd": "containerd", "ctr": "containerd", "runc": "runc",
         "iptables-save": "iptables", "ip": "iproute2",
         "conntrack": "conntrack"}  # kube-proxy clears stale UDP (DNS) entries with it
CNI_DIRS = ["/usr/lib/cni", "/opt/cni/bin"]


def missing_tools() -> list[str]:
    out = [f"{t} (Debian package {pkg})" for t, pkg in TOOLS.items() if not shutil.which(t)]
    if not cni_bin_dir():
        out.append("CNI plugins (Debian package containernetworking-plugins)")
    return out


def cni_bin_dir() -> str | None:
    return next((d for d in CNI_DIRS if Path(d, "bridge").exists()), None)


def host_ip() -> str:
    """The address other hosts would use (the kubelet refuses a loopback node IP)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
        s.connect(("192.0.2.255", 9))
        return s.getsockname()[0]
    out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    v4 = [a for a in out if "." in a and not a.startswith("127.")]
    if not v4:
        raise RuntimeError("no non-loopback IPv4 address for the kubelet")
    return v4[0]


# --- the machine's state ---------------------------------------------------------------
def _sysctl_path(key: str) -> Path:
    return Path("/proc/sys") / key.replace(".", "/")


def _iptables(tool: str, table: str) -> str | None:
    p = subprocess.run([tool, "-t", table], capture_output=True, text=True)
    return p.stdout if p.returncode == 0 else None


def _links() -> list[str]:
    p = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    return sorted({line.split(":")[1].strip().split("@")[0] for line in p.stdout.splitlines()})


def _mounts() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def _netns() -> list[str]:
    d = Path("/run/netns")
    return sorted(p.name for p in d.iterdir()) if d.is_dir() else []


def _cgroups() -> dict[str, list[str]]:
    root = Path("/sys/fs/cgroup")
    out = {}
    for ctrl in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        with contextlib.suppress(OSError):
            out[ctrl.name] = sorted(p.name for p in ctrl.iterdir() if p.is_dir())
    return out


def machine_state() -> dict:
    state: dict = {"sysctl": {}, "iptables": {}, "links": _links(), "mounts": _mounts(),
                   "netns": _netns(), "cgroups": _cgroups()}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            state["sysctl"][key] = _sysctl_path(key).read_text().strip()
    for tool in ("iptables-save", "ip6tables-save"):
        if shutil.which(tool):
            for table in TABLES:
                text = _iptables(tool, table)
                if text is not None:
                    state["iptables"][f"{tool}/{table}"] = text
    return state


def normalised_rules(text: str) -> list[str]:
    """iptables-save text without comments and packet counters."""
    return [line.split(" [")[0] if line.startswith(":") else line
            for line in text.splitlines() if line and not line.startswith("#")]


def differences(before: dict, after: dict) -> list[str]:
    """What differs between two :func:`machine_state` results (empty: put back)."""
    out = []
    for key, val in before["sysctl"].items():
        if after["sysctl"].get(key) != val:
            out.append(f"sysctl {key}: {val} -> {after['sysctl'].get(key)}")
    for key, text in before["iptables"].items():
        if normalised_rules(after["iptables"].get(key, "")) != normalised_rules(text):
            out.append(f"iptables {key} differs")
    for what in ("links", "netns"):
        extra = sorted(set(after[what]) - set(before[what]))
        if extra:
            out.append(f"{what} added: {extra}")
    extra = sorted(set(after["mounts"]) - set(before["mounts"]))
    if extra:
        out.append(f"mounts added: {extra[:10]}")
    for ctrl, names in after["cgroups"].items():
        extra = sorted(set(names) - set(before["cgroups"].get(ctrl, [])))
        if extra:
            out.append(f"cgroup {ctrl} added: {extra}")
    return out


def ours(rundir: Path) -> dict:
    """Predicates for what this Node made (the machine is shared: never touch the rest)."""
    node = str(rundir / "node")
    return {
        "mount": lambda mp: mp.startswith((node, "/run/netns/cni-")),
        "netns": lambda ns: ns.startswith("cni-"),
        "cgroup": lambda name: name.startswith("kubepods"),
        # iptables lines the kubelet or the CNI plugins write
        "rule": lambda line: any(m in line for m in ("KUBE-", "CNI-", BRIDGE)),
    }


def bridge_ports() -> list[str]:
    p = subprocess.run(["ip", "-o", "link", "show", "master", BRIDGE], capture_output=True,
                       text=True)
    return [line.split(":")[1].strip().split("@")[0] for line in p.stdout.splitlines()]


def restore(before: dict, rundir: Path, log) -> list[str]:
    """Put back what this Node changed since ``before``; returns what still differs.

    Only this Node's own things are removed (mounts under its dir, ``cni-`` network
    namespaces, the ``fgtest0`` bridge and its veths, ``kubepods`` cgroups, iptables
    lines naming KUBE-/CNI- chains or the bridge): anything else another program made
    meanwhile is reported, never touched."""
    now = machine_state()
    mine = ours(rundir)
    # network namespaces (containerd bind-mounts them; ours live under its state dir)
    for ns in sorted(set(now["netns"]) - set(before["netns"])):
        if mine["netns"](ns):
            subprocess.run(["umount", f"/run/netns/{ns}"], capture_output=True)
            with contextlib.suppress(OSError):
                Path("/run/netns", ns).unlink()
    # mounts that appeared (deepest first): overlay rootfs, shm, volumes, netns
    for mp in sorted(set(now["mounts"]) - set(before["mounts"]), key=len, reverse=True):
        if mine["mount"](mp):
            subprocess.run(["umount", "-l", mp], capture_output=True)
    # links: the bridge's veth ends (normally gone with their netns), then the bridge
    if BRIDGE not in before["links"]:
        for link in [*bridge_ports(), BRIDGE]:
            subprocess.run(["ip", "link", "delete", link], capture_output=True)
    # cgroups the kubelet made (kubepods ...): leaf first, only empty ones can go
    root = Path("/sys/fs/cgroup")
    for ctrl, names in now["cgroups"].items():
        for name in set(names) - set(before["cgroups"].get(ctrl, [])):
            if not mine["cgroup"](name):
                continue
            top = root / ctrl / name
            for d in sorted((p for p in top.rglob("*") if p.is_dir()),
                            key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    d.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
    # iptables: a table that changed goes back as it was, if every changed line is ours
    for key, text in before["iptables"].items():
        was = normalised_rules(text)
        is_ = normalised_rules(_iptables(key.split("/")[0], key.split("/")[1]) or "")
        changed = set(was) ^ set(is_)
        if not changed:
            continue
        if not all(mine["rule"](line) for line in changed):
            log(f"warning: iptables {key} changed by someone else too: left as it is")
            continue
        # the saved text holds that one table: restoring it replaces only that table
        tool = key.split("/")[0].replace("-save", "-restore")
        p = subprocess.run([tool], input=text, text=True, capture_output=True)
        if p.returncode != 0:
            log(f"warning: {tool} ({key}): {p.stderr.strip()}")
    for key, val in before["sysctl"].items():
        path = _sysctl_path(key)
        with contextlib.suppress(OSError):
            if path.read_text().strip() != val:
                path.write_text(val + "\n")
    left = differences(before, machine_state())
    for d in left:
        log(f"warning: not put back: {d}")
    return left


# --- certificates -------------------------------------------------------------------
def node_pki(pki: Path, openssl, genkey, node_ip: str) -> None:
    """Kubelet client (system:node:NAME), kubelet serving, apiserver->kubelet client."""
    certs = {
        "kubelet-client": (f"/O=system:nodes/CN=system:node:{NAME}", "clientAuth", None),
        "kubelet-serving": (f"/O=system:nodes/CN=system:node:{NAME}", "serverAuth",
                            f"IP:{node_ip},DNS:{NAME},DNS:localhost,IP:127.0.0.1"),
        "apiserver-kubelet-client": ("/O=system:masters/CN=kube-apiserver-kubelet-client",
                                     "clientAuth", None),
        # kube-proxy's user is bound to system:node-proxier by the apiserver's defaults;
        # CoreDNS's gets the ClusterRole of dns_objects() (what kubeadm gives it).
        "kube-proxy": ("/CN=system:kube-proxy", "clientAuth", None),
        "coredns": ("/CN=system:coredns", "clientAuth", None),
    }
    for name, (subj, eku, san) in certs.items():
        genkey(f"{name}.key", pki)
        openssl("req", "-new", "-key", f"{name}.key", "-subj", subj, "-out", f"{name}.csr",
                cwd=pki)
        ext = ["basicConstraints=critical,CA:FALSE", "keyUsage=critical,digitalSignature",
               f"extendedKeyUsage={eku}"] + ([f"subjectAltName={san}"] if san else [])
        (pki / f"{name}.ext").write_text("\n".join(ext) + "\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "3650", "-sha256", "-extfile", f"{name}.ext",
                "-out", f"{name}.crt", cwd=pki)
        (pki / f"{name}.key").chmod(0o600)


def apiserver_args(pki: Path) -> list[str]:
    return [f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={pki / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP"]


# --- containerd ---------------------------------------------------------------------
def containerd_config(rundir: Path, pause_ref: str) -> Path:
    d = rundir / "node"
    (d / "cni").mkdir(parents=True, exist_ok=True)
    conflist = {
        "cniVersion": "1.0.0", "name": "facegrid-test",
        "plugins": [{"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                     "hairpinMode": True,
                     "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET}]],
                              "routes": [{"dst": "0.0.0.0/0"}],
                              "dataDir": str(d / "cni-ipam")}}],
    }
    (d / "cni" / "10-facegrid.conflist").write_text(json.dumps(conflist, indent=1))
    cri = 'plugins."io.containerd.grpc.v1.cri"'
    text = f"""version = 2
root = "{d / 'containerd'}"
state = "{d / 'containerd-state'}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{d / 'containerd.sock'}"
[ttrpc]
  address = "{d / 'containerd.sock.ttrpc'}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"
[{cri}]
  sandbox_image = "{pause_ref}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [{cri}.cni]
    bin_dir = "{cni_bin_dir()}"
    conf_dir = "{d / 'cni'}"
"""
    path = d / "containerd.toml"
    path.write_text(text)
    return path


def socket_path(rundir: Path) -> Path:
    return rundir / "node" / "containerd.sock"


def ctr(rundir: Path, *args: str, check: bool = True, timeout: float = 300,
        **kw) -> subprocess.CompletedProcess:
    p = subprocess.run(["ctr", "--address", str(socket_path(rundir)), "-n", "k8s.io", *args],
                       capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError(f"ctr {' '.join(args)}: {p.stderr.strip()}")
    return p


def pause_archive(bd: Path, ref: str, out: Path) -> Path:
    """A docker-archive holding only /pause (built from the kubelet's module), as ``ref``."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        info = t.gettarinfo(str(bd / "pause"), arcname="pause")
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755
        with (bd / "pause").open("rb") as f:
            t.addfile(info, f)
    blob = layer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(blob).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
                         "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [ref],
                            "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(out, "w") as t:
        for name, data in (("layer.tar", blob), (config_name, config),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return out


def kubelet_config(rundir: Path, pki: Path, node_ip: str, port: int, healthz: int) -> Path:
    d = rundir / "node"
    cfg = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
        "address": node_ip, "port": port, "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1", "healthzPort": healthz,
        "tlsCertFile": str(pki / "kubelet-serving.crt"),
        "tlsPrivateKeyFile": str(pki / "kubelet-serving.key"),
        "authentication": {"x509": {"clientCAFile": str(pki / "ca.crt")},
                           "webhook": {"enabled": False}, "anonymous": {"enabled": False}},
        "authorization": {"mode": "AlwaysAllow"},
        "containerRuntimeEndpoint": f"unix://{socket_path(rundir)}",
        # cgroup v1 and no systemd here (docs/k8s-test-cluster.md "A real Node")
        "failCgroupV1": False, "cgroupDriver": "cgroupfs", "oomScoreAdj": 0,
        "failSwapOn": False, "makeIPTablesUtilChains": False,
        "resolvConf": "/etc/resolv.conf", "maxPods": 30,
        # Pods resolve Services through the cluster DNS (CoreDNS behind kube-dns).
        "clusterDNS": [DNS_SERVICE_IP], "clusterDomain": CLUSTER_DOMAIN,
        # No taint: the real Node is the control host (the chart's pods land here) and
        # an edge host too (its label lets a CameraNode name it).
        "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%",
                         "imagefs.available": "2%"},
        "serializeImagePulls": False, "rotateCertificates": False,
        "nodeStatusUpdateFrequency": "4s", "nodeStatusReportFrequency": "10s",
        "syncFrequency": "5s", "fileCheckFrequency": "5s",
    }
    path = d / "kubelet.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path


def kubelet_argv(rundir: Path, config: Path, node_ip: str) -> list[str]:
    d = rundir / "node"
    return [f"--config={config}", f"--kubeconfig={d / 'kubelet.kubeconfig'}",
            f"--root-dir={d / 'kubelet'}", f"--cert-dir={d / 'kubelet-pki'}",
            f"--hostname-override={NAME}", f"--node-ip={node_ip}",
            "--node-labels=facegrid.io/edge=true,facegrid.io/control=true,"
            "facegrid.io/real-node=true", "--v=1"]


# --- Services: kube-proxy and the cluster DNS ------------------------------------------
def kube_proxy_config(rundir: Path, node_ip: str, healthz: int, metrics_port: int) -> Path:
    """kube-proxy in iptables mode for the pod bridge's range (ClusterIPs reachable
    from pods and from this machine).  It leaves conntrack limits and timeouts alone
    (zeros): the machine is a developer's."""
    d = rundir / "node"
    cfg = {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": str(d / "kube-proxy.kubeconfig")},
        "mode": "iptables", "clusterCIDR": POD_SUBNET, "hostnameOverride": NAME,
        "bindAddress": node_ip,
        "healthzBindAddress": f"127.0.0.1:{healthz}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        "nodePortAddresses": [f"{node_ip}/32"],
        "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                      "tcpCloseWaitTimeout": "0s"},
        "iptables": {"syncPeriod": "30s", "minSyncPeriod": "0s"},
    }
    path = d / "kube-proxy.json"
    path.write_text(json.dumps(cfg, indent=1))
    return path


def corefile(rundir: Path, node_ip: str, port: int, health: int, ready: int) -> Path:
    """CoreDNS answering the cluster domain from the API, forwarding the rest to this
    machine's resolvers; it listens on the node's address only."""
    d = rundir / "node"
    text = f""".:{port} {{
    bind {node_ip}
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes {CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {{
        kubeconfig {d / 'coredns.kubeconfig'}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 5
    }}
    cache 5
    forward . /etc/resolv.conf
}}
"""
    path = d / "Corefile"
    path.write_text(text)
    return path


def dns_objects(node_ip: str, port: int) -> list[tuple[str, dict]]:
    """The CoreDNS user's ClusterRole (kubeadm's), the ``kube-dns`` Service at
    DNS_SERVICE_IP and its EndpointSlice: the node's address, CoreDNS's port."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "system:coredns"},
            "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods",
                                                          "namespaces"],
                       "verbs": ["list", "watch"]},
                      {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                       "verbs": ["list", "watch"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": "system:coredns"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                           "name": "system:coredns"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                             "name": "system:coredns"}]}
    ports = [("dns", "UDP"), ("dns-tcp", "TCP")]
    service = {"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "kube-dns", "namespace": "kube-system",
                            "labels": {"k8s-app": "kube-dns"}},
               "spec": {"clusterIP": DNS_SERVICE_IP,
                        "ports": [{"name": n, "port": 53, "protocol": proto,
                                   "targetPort": port} for n, proto in ports]}}
    slice_ = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
              "metadata": {"name": "kube-dns-host", "namespace": "kube-system",
                           "labels": {"kubernetes.io/service-name": "kube-dns"}},
              "addressType": "IPv4",
              "endpoints": [{"addresses": [node_ip], "conditions": {"ready": True},
                             "nodeName": NAME}],
              "ports": [{"name": n, "port": port, "protocol": proto} for n, proto in ports]}
    return [("/apis/rbac.authorization.k8s.io/v1/clusterroles", role),
            ("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", binding),
            ("/api/v1/namespaces/kube-system/services", service),
            ("/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices", slice_)]


def stop(rundir: Path, info: dict, log) -> list[str]:
    """Pods, kubelet, containerd stopped; the machine put back.  Returns leftovers."""
    procs = info.get("procs", {})

    def term(name: str, wait: float) -> None:
        c = procs.get(name)
        if not c or not _alive(c["pid"], c["exe"]):
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(c["pid"], signal.SIGTERM)
        deadline = time.monotonic() + wait
        while _alive(c["pid"], c["exe"]) and time.monotonic() < deadline:
            _reap(c["pid"])
            time.sleep(0.1)
        if _alive(c["pid"], c["exe"]):
            with contextlib.suppress(ProcessLookupError):
                os.kill(c["pid"], signal.SIGKILL)
            time.sleep(0.5)
            _reap(c["pid"])

    term("kubelet", 15)
    term("kube-proxy", 10)
    term("coredns", 10)
    c = procs.get("containerd")
    if c and _alive(c["pid"], c["exe"]):
        # every pod's containers and sandboxes: killed, deleted (CNI DEL through CRI
        # is gone with the kubelet; leftovers are cleaned by restore()).
        tasks = ctr(rundir, "tasks", "ls", "-q", check=False, timeout=30).stdout.split()
        for t in tasks:
            ctr(rundir, "tasks", "kill", "-s", "SIGKILL", t, check=False, timeout=30)
        deadline = time.monotonic() + 15
        for t in tasks:
            while time.monotonic() < deadline and ctr(
                    rundir, "tasks", "delete", t, check=False, timeout=30).returncode != 0:
                time.sleep(0.3)
        for cid in ctr(rundir, "containers", "ls", "-q", check=False, timeout=30).stdout.split():
            ctr(rundir, "containers", "delete", cid, check=False, timeout=30)
        term("containerd", 15)
    # containerd-shim processes outlive containerd by design: end ours (by their socket dir)
    for pid in _shims(rundir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    before = info.get("machine_before")
    if not before:
        return []
    return restore(json.loads(Path(before).read_text()), rundir, log)


def _shims(rundir: Path) -> list[int]:
    out = []
    needle = str(rundir / "node").encode()
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            with contextlib.suppress(OSError):
                cmd = (p / "cmdline").read_bytes()
                if b"containerd-shim" in cmd and needle in cmd:
                    out.append(int(p.name))
    return out


def _alive(pid: int, exe: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        return Path(exe).name in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]\
            .decode(errors="replace")
    return False


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
