"""The Helm chart, rendered by the real helm binary: lint, several values
files, restricted pod security, names/labels, settings env names, the CRD."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fixtures.chart import CHART, REPO, VALUES_DIR, by_kind, pod_specs

pytestmark = pytest.mark.unit

VALUES_FILES = sorted(p.name for p in VALUES_DIR.glob("*.yaml"))
RELEASE_LABELS = ("app.kubernetes.io/name", "app.kubernetes.io/instance",
                  "app.kubernetes.io/version", "app.kubernetes.io/managed-by",
                  "helm.sh/chart", "app.kubernetes.io/part-of")


def settings_fields() -> dict[str, set[str]]:
    """FACEGRID_* env names each component's Settings class accepts."""
    from facegrid_operator.settings import OperatorSettings
    from facegrid_services.api.settings import ServerSettings
    from facegrid_services.notify.settings import NotifierSettings
    from facegrid_services.worker.settings import WorkerSettings

    def names(cls) -> set[str]:
        # FACEGRID_LOG_LEVEL is the root `facegrid --log-level` option (every command).
        return {f"FACEGRID_{n.upper()}" for n in cls.model_fields} | {"FACEGRID_LOG_LEVEL"}

    return {"server": names(ServerSettings), "worker": names(WorkerSettings),
            "operator": names(OperatorSettings), "notifier": names(NotifierSettings)}


def test_helm_lint_strict_with_every_values_file(helm):
    helm.run("lint", "--strict", str(CHART))
    for v in VALUES_FILES:
        helm.run("lint", "--strict", str(CHART), "-f", str(VALUES_DIR / v))


def test_defaults_render_every_component(render):
    docs = render()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for kind, name in [("Deployment", "fg-facegrid-operator"), ("Deployment", "fg-facegrid-server"),
                       ("Deployment", "fg-facegrid-worker"),
                       ("Deployment", "fg-facegrid-notifier"), ("StatefulSet", "fg-facegrid-redis"),
                       ("StatefulSet", "fg-facegrid-postgresql"), ("Service", "fg-facegrid-server"),
                       ("Service", "fg-facegrid-redis"), ("Service", "fg-facegrid-postgresql"),
                       ("CustomResourceDefinition", "cameranodes.facegrid.io"),
                       ("ServiceAccount", "fg-facegrid-operator"),
                       ("Role", "fg-facegrid-operator"),
                       ("Pod", "fg-facegrid-test-readyz"),
                       ("ConfigMap", "fg-facegrid-dashboard-camera-fleet"),
                       ("ConfigMap", "fg-facegrid-dashboard-pipeline")]:
        assert (kind, name) in kinds, f"{kind}/{name} missing from {sorted(kinds)}"
    # Optional objects stay off by default.
    for kind in ("Ingress", "HorizontalPodAutoscaler", "ScaledObject", "ServiceMonitor",
                 "PodMonitor", "PrometheusRule"):
        assert not by_kind(docs, kind), kind
    assert len(by_kind(docs, "NetworkPolicy")) == 6
    assert "Deployment" not in {d["kind"] for d in docs
                                if d["metadata"]["name"] == "fg-facegrid-mqtt"}


@pytest.mark.parametrize("values", [[], *[[v] for v in VALUES_FILES]],
                         ids=["defaults", *VALUES_FILES])
def test_every_pod_meets_restricted_pod_security(render, values):
    for name, spec in pod_specs(render(values=values)).items():
        psc = spec.get("securityContext") or {}
        assert psc.get("runAsNonRoot") is True, name
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", name
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), name
        for c in spec["containers"] + spec.get("initContainers", []):
            sc = c.get("securityContext") or {}
            where = f"{name}/{c['name']}"
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where
            assert not sc.get("privileged"), where
            assert (c.get("resources") or {}).get("requests"), where
        # server, worker and the databases never call the Kubernetes API
        if "operator" not in name:
            assert spec.get("automountServiceAccountToken") is False, name


@pytest.mark.parametrize("values", [[], *[[v] for v in VALUES_FILES]],
                         ids=["defaults", *VALUES_FILES])
def test_names_labels_and_selectors(render, values):
    docs = render(values=values)
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        for key in RELEASE_LABELS:
            assert key in labels, f"{d['kind']}/{d['metadata']['name']} lacks label {key}"
        assert len(d["metadata"]["name"]) <= 63 or d["kind"] == "CustomResourceDefinition"
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet"):
            sel = d["spec"]["selector"]["matchLabels"]
            pod_labels = d["spec"]["template"]["metadata"]["labels"]
            assert sel.items() <= pod_labels.items(), d["metadata"]["name"]
            assert "app.kubernetes.io/component" in sel
    # Every Service selects the pods of exactly one workload.
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    for svc in by_kind(docs, "Service").values():
        sel = svc["spec"]["selector"].items()
        hits = [w for w in workloads if sel <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(hits) == 1, svc["metadata"]["name"]


@pytest.mark.parametrize("values", [[], *[[v] for v in VALUES_FILES]],
                         ids=["defaults", *VALUES_FILES])
def test_env_names_exist_and_references_resolve(render, values):
    docs = render(values=values)
    fields = settings_fields()
    secrets = set(by_kind(docs, "Secret"))
    configmaps = set(by_kind(docs, "ConfigMap"))
    vals = [yaml.safe_load((VALUES_DIR / v).read_text()) for v in values]
    existing = {v.get(k, {}).get("existingSecret") for v in vals
                for k in ("externalDatabase", "externalRedis")} - {None}
    # Created at run time by the operator (a test in tests/k8s checks it does).
    operator_made = {"fg-facegrid-signing-pub"}
    for name, spec in pod_specs(docs).items():
        component = name.split("-facegrid-")[-1]
        for c in spec["containers"]:
            for e in c.get("env", []):
                if component in fields and e["name"].startswith("FACEGRID_"):
                    assert e["name"] in fields[component], f"{name}: {e['name']} is no setting"
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets | existing, f"{name}: Secret {ref['name']}"
                    if ref["name"] in secrets:
                        s = by_kind(docs, "Secret")[ref["name"]]
                        assert ref["key"] in s.get("stringData", {}) | s.get("data", {}), (
                            f"{name}: key {ref['key']} of Secret {ref['name']}")
        for vol in spec.get("volumes", []):
            if "secret" in vol:
                assert vol["secret"]["secretName"] in secrets | existing, name
            if "configMap" in vol:
                assert vol["configMap"]["name"] in configmaps | operator_made, name


def env_of(docs, kind, name, container=0) -> dict[str, dict]:
    spec = by_kind(docs, kind)[name]["spec"]["template"]["spec"]
    return {e["name"]: e for e in spec["containers"][container]["env"]}


def test_server_worker_operator_wiring(render):
    docs = render()
    server = env_of(docs, "Deployment", "fg-facegrid-server")
    worker = env_of(docs, "Deployment", "fg-facegrid-worker")
    op = env_of(docs, "Deployment", "fg-facegrid-operator")
    for role, env in (("server", server), ("worker", worker)):
        # Each role its own Redis ACL user and password Secret (src/facegrid/acl.py).
        assert env["FACEGRID_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": f"fg-facegrid-redis-{role}", "key": "redis-url"}
        assert env["FACEGRID_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "fg-facegrid-database", "key": "database-url"}
        assert env["FACEGRID_PUBLIC_KEY_FILE"]["value"] == "/etc/facegrid/keys/signing.pub"
    assert worker["FACEGRID_METRICS_PORT"]["value"] == "9101"
    assert worker["FACEGRID_MODEL"]["value"] == "facenet-vggface2"
    assert op["FACEGRID_SERVER_URL"]["value"] == "http://fg-facegrid-server.facegrid.svc:8000"
    # Each CameraNode its own Redis user, made through the operator's own (facegrid.acl).
    assert op["FACEGRID_REDIS_ADMIN_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "fg-facegrid-redis-operator", "key": "redis-url"}
    assert op["FACEGRID_NODE_REDIS_URL"]["value"] == "redis://fg-facegrid-redis:6379/0"
    assert "FACEGRID_NODE_REDIS_URL_SECRET" not in op
    assert "fg-facegrid-redis-node" not in by_kind(docs, "Secret")  # no shared node user
    assert op["FACEGRID_SIGNING_KEY_SECRET"]["value"] == "fg-facegrid-signing-key"
    assert op["FACEGRID_PUBLIC_KEY_CONFIGMAP"]["value"] == "fg-facegrid-signing-pub"
    assert op["FACEGRID_NODE_IMAGE"]["value"] == "facegrid/node:0.1.0"
    assert op["FACEGRID_METRICS_PORT"]["value"] == "9102"
    # Generated credentials: URL-safe and consistent with the URL they sit in.
    redis = by_kind(docs, "Secret")["fg-facegrid-redis"]["stringData"]
    assert redis["redis-password"].isalnum() and len(redis["redis-password"]) == 32
    assert redis["redis-url"] == f"redis://:{redis['redis-password']}@fg-facegrid-redis:6379/0"
    for role in ("server", "worker", "operator"):
        user = by_kind(docs, "Secret")[f"fg-facegrid-redis-{role}"]["stringData"]
        assert user["password"].isalnum() and user["password"] != redis["redis-password"]
        assert user["redis-url"] == (f"redis://facegrid-{role}:{user['password']}"
                                     "@fg-facegrid-redis:6379/0")
    db = by_kind(docs, "Secret")["fg-facegrid-database"]["stringData"]
    assert db["database-url"] == (f"postgresql+psycopg://facegrid:{db['postgres-password']}"
                                  "@fg-facegrid-postgresql:5432/facegrid")
    # Redis: password never on the command line; AOF on; PVC.
    sts = by_kind(docs, "StatefulSet")["fg-facegrid-redis"]
    conf = by_kind(docs, "ConfigMap")["fg-facegrid-redis"]["data"]["redis.conf"]
    assert "appendonly yes" in conf and "include /run/redis/auth.conf" in conf
    assert "maxmemory-policy noeviction" in conf
    assert redis["redis-password"] not in json.dumps(sts)
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"] == {
        "storage": "2Gi"}


def test_external_redis_and_database(render, helm):
    docs = render(values=["external.yaml"])
    assert not by_kind(docs, "StatefulSet")
    assert {"fg-facegrid-redis", "fg-facegrid-admin"} <= set(by_kind(docs, "Secret"))
    assert "fg-facegrid-database" not in by_kind(docs, "Secret")
    assert by_kind(docs, "Secret")["fg-facegrid-redis"]["stringData"] == {
        "redis-url": "rediss://:s3cret@redis.example.com:6380/0"}
    worker = env_of(docs, "Deployment", "fg-facegrid-worker")
    assert worker["FACEGRID_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "facegrid-db", "key": "url"}
    # An external Redis: no ACL users of the chart's; camera pods get the one URL.
    op = env_of(docs, "Deployment", "fg-facegrid-operator")
    assert op["FACEGRID_NODE_REDIS_URL_SECRET"]["value"] == "fg-facegrid-redis:redis-url"
    assert "FACEGRID_REDIS_ADMIN_URL" not in op
    assert {n["metadata"]["name"] for n in by_kind(docs, "NetworkPolicy").values()} == {
        "fg-facegrid-server", "fg-facegrid-worker", "fg-facegrid-operator",
        "fg-facegrid-notifier"}
    notifier = env_of(docs, "Deployment", "fg-facegrid-notifier")
    assert notifier["FACEGRID_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "facegrid-db", "key": "url"}
    # Forgetting the URL is a clear error, not a broken install.
    p = helm.template_text("--set", "redis.enabled=false", check=False)
    assert p.returncode != 0
    assert "set externalRedis.url or externalRedis.existingSecret" in p.stderr


def test_operator_is_namespaced_unless_cluster_wide_is_asked_for(render):
    docs = render()
    # default: a Role in the release namespace only; the one cluster-wide grant reads Nodes
    (role,) = [r for r in docs if r["kind"] == "Role" and r["metadata"]["name"] ==
               "fg-facegrid-operator"]
    assert role["metadata"]["namespace"] == "facegrid"
    (cluster_role,) = by_kind(docs, "ClusterRole").values()
    assert [r["resources"] for r in cluster_role["rules"]] == [["nodes"]]
    assert set(cluster_role["rules"][0]["verbs"]) == {"get", "list", "watch"}
    op = env_of(docs, "Deployment", "fg-facegrid-operator")
    assert op["FACEGRID_WATCH_NAMESPACES"]["value"] == "facegrid"
    # least-privilege defaults reach the operator
    assert op["FACEGRID_FILE_SOURCE_PREFIX"]["value"] == "/var/lib/facegrid/media/"
    assert op["FACEGRID_PRIVILEGED_DEVICES"]["value"] == "false"
    assert op["FACEGRID_DEVICE_RESOURCE_PREFIX"]["value"] == "smarter-devices/"
    assert "FACEGRID_ALLOWED_IMAGES" not in op
    wide = render("--set", "operator.clusterWide=true", "--set",
                  "operator.allowedNodeImages={mirror.lan/facegrid/node,lab.lan/}")
    assert "facegrid-fg-facegrid-operator" in by_kind(wide, "ClusterRole")
    assert not [r for r in wide if r["kind"] == "Role" and r["metadata"]["name"] ==
                "fg-facegrid-operator"]
    op = env_of(wide, "Deployment", "fg-facegrid-operator")
    assert "FACEGRID_WATCH_NAMESPACES" not in op
    assert op["FACEGRID_ALLOWED_IMAGES"]["value"] == "mirror.lan/facegrid/node,lab.lan/"


def test_full_values_ingress_hpa_namespaced_operator(render):
    docs = render(values=["full.yaml"])
    ing = by_kind(docs, "Ingress")["fg-facegrid-server"]
    assert ing["spec"]["ingressClassName"] == "nginx"
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"] == {
        "name": "fg-facegrid-server", "port": {"name": "http"}}
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["fg-facegrid-worker"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "fg-facegrid-worker"
    assert "replicas" not in by_kind(docs, "Deployment")["fg-facegrid-worker"]["spec"]
    roles = [r for r in docs if r["kind"] == "Role" and r["metadata"]["name"] ==
             "fg-facegrid-operator"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["cameras-a", "cameras-b"]
    assert "facegrid-fg-facegrid-operator" not in by_kind(docs, "ClusterRole")
    op = env_of(docs, "Deployment", "fg-facegrid-operator")
    assert op["FACEGRID_WATCH_NAMESPACES"]["value"] == "cameras-a,cameras-b"
    for name, spec in pod_specs(docs).items():
        assert spec["imagePullSecrets"] == [{"name": "regcred"}], name
        for c in spec["containers"]:
            assert c["image"].startswith("registry.example.com/mirror/"), (name, c["image"])
    assert not any(d["kind"] == "StatefulSet" and d["spec"].get("volumeClaimTemplates")
                   for d in docs)


def test_keda_scaled_object_on_stream_lag(render, helm):
    from facegrid import keys

    docs = render(values=["keda.yaml"])
    so = by_kind(docs, "ScaledObject")["fg-facegrid-worker"]
    assert so["spec"]["minReplicaCount"] == 0 and so["spec"]["maxReplicaCount"] == 8
    assert so["spec"]["scaleTargetRef"]["name"] == "fg-facegrid-worker"
    (trig,) = so["spec"]["triggers"]
    assert trig["type"] == "redis-streams"
    md = trig["metadata"]
    assert md["stream"] == keys.EVENTS_STREAM and md["consumerGroup"] == keys.WORKER_GROUP
    assert md["address"] == "fg-facegrid-redis.facegrid.svc:6379"
    assert md["lagCount"] == "50" and md["activationLagCount"] == "0"
    ta = by_kind(docs, "TriggerAuthentication")[trig["authenticationRef"]["name"]]
    # KEDA's own read-only Redis user (src/facegrid/acl.py "keda"), not the admin password.
    assert ta["spec"]["secretTargetRef"] == [
        {"parameter": "username", "name": "fg-facegrid-redis-keda", "key": "username"},
        {"parameter": "password", "name": "fg-facegrid-redis-keda", "key": "password"}]
    keda_user = by_kind(docs, "Secret")["fg-facegrid-redis-keda"]["stringData"]
    assert keda_user["username"] == "facegrid-keda" and keda_user["password"].isalnum()
    assert "replicas" not in by_kind(docs, "Deployment")["fg-facegrid-worker"]["spec"]
    # KEDA reaches Redis through the NetworkPolicy.
    np = by_kind(docs, "NetworkPolicy")["fg-facegrid-redis"]
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}} in (
        np["spec"]["ingress"][0]["from"])
    p = helm.template_text("--set", "worker.keda.enabled=true",
                           "--set", "worker.autoscaling.enabled=true", check=False)
    assert p.returncode != 0 and "exclusive" in p.stderr


MONITORING_KINDS = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def test_monitoring_only_with_prometheus_operator_crds(render):
    assert not [d for d in render() if d["kind"] in MONITORING_KINDS]
    detected = render("--api-versions", "monitoring.coreos.com/v1")
    forced = render(values=["monitoring.yaml"])
    for docs in (detected, forced):
        kinds = {(d["kind"], d["metadata"]["name"]) for d in docs if d["kind"] in MONITORING_KINDS}
        assert kinds == {("ServiceMonitor", "fg-facegrid-server"),
                         ("PodMonitor", "fg-facegrid-worker"),
                         ("PodMonitor", "fg-facegrid-operator"),
                         ("PodMonitor", "fg-facegrid-nodes"),
                         ("PrometheusRule", "fg-facegrid")}, kinds
    assert all(d["metadata"]["labels"]["release"] == "kube-prometheus-stack"
               for d in forced if d["kind"] in MONITORING_KINDS)
    off = render("--api-versions", "monitoring.coreos.com/v1", "--set", "monitoring.enabled=false")
    assert not [d for d in off if d["kind"] in MONITORING_KINDS]


def test_alert_rules_cover_the_four_failure_modes(render):
    rules = by_kind(render(values=["monitoring.yaml"]), "PrometheusRule")["fg-facegrid"]
    alerts = {r["alert"]: r for g in rules["spec"]["groups"] for r in g["rules"] if "alert" in r}
    assert {"FacegridCameraOffline", "FacegridStreamBacklogGrowing", "FacegridDeadLetters",
            "FacegridNodeTokenExpiring"} <= set(alerts)
    for a in alerts.values():
        assert a["labels"]["severity"] in ("warning", "critical")
        assert a["annotations"]["summary"] and a["annotations"]["description"]


def test_dashboards_become_sidecar_configmaps(render):
    docs = render(values=["monitoring.yaml"])
    files = sorted((CHART / "dashboards").glob("*.json"))
    assert len(files) >= 2
    cms = {n: d for n, d in by_kind(docs, "ConfigMap").items() if "-dashboard-" in n}
    assert len(cms) == len(files)
    for f in files:
        cm = cms[f"fg-facegrid-dashboard-{f.stem}"]
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["namespace"] == "monitoring"
        assert json.loads(cm["data"][f.name]) == json.loads(f.read_text())


def test_chart_copies_equal_their_sources():
    """The CRD and the operator's RBAC are edited in one place each (crds/,
    operator/deploy/rbac.yaml); the chart holds copies made by scripts/sync-chart."""
    p = subprocess.run([sys.executable, str(REPO / "scripts" / "sync-chart"), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert (CHART / "files" / "operator-rbac.yaml").read_bytes() == \
        (REPO / "operator" / "deploy" / "rbac.yaml").read_bytes()
    # Nothing under the chart's crds/: Helm would install it and never upgrade it.
    assert not (CHART / "crds").exists()


def test_crd_rendered_as_template_kept_on_uninstall(render):
    src = yaml.safe_load((REPO / "crds" / "cameranodes.facegrid.io.yaml").read_text())
    crd = by_kind(render(), "CustomResourceDefinition")["cameranodes.facegrid.io"]
    assert crd["spec"] == src["spec"]
    assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert not by_kind(render("--set", "crds.install=false"), "CustomResourceDefinition")


@pytest.mark.parametrize("setting, needle", [
    ("logLevel=LOUD", "logLevel"),
    ("operator.replicas=2", "replicas"),
    ("worker.keda.lagCount=lots", "lagCount"),
    ("redis.appendfsync=sometimes", "appendfsync"),
    ("server.image.digest=latest", "digest"),
    ("nosuchkey=1", "nosuchkey"),
])
def test_schema_refuses_bad_values(helm, setting, needle):
    p = helm.template_text("--set", setting, check=False)
    assert p.returncode != 0
    assert "schema" in p.stderr and needle in p.stderr, p.stderr


def test_values_documented_and_schema_covers_them():
    """Every top-level key of values.yaml has a comment right above it, and the
    schema knows every key (additionalProperties false refuses typos)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith((" ", "#")):
            above = lines[i - 1].strip() if i else ""
            assert above.startswith("#"), f"values.yaml: top-level {line!r} has no comment"
    values = yaml.safe_load("\n".join(lines))
    schema = json.loads((CHART / "values.schema.json").read_text())
    import jsonschema

    jsonschema.validate(values, schema)

    def walk(node, sch, path):
        if "$ref" in sch:
            sch = schema["definitions"][sch["$ref"].rsplit("/", 1)[1]]
        if isinstance(node, dict) and sch.get("additionalProperties") is False:
            assert set(node) == set(sch["properties"]), path
            for k, v in node.items():
                walk(v, sch["properties"][k], f"{path}.{k}")

    walk(values, schema, "values")


def test_helm_test_hook_curls_readyz(render):
    pod = by_kind(render(), "Pod")["fg-facegrid-test-readyz"]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    args = pod["spec"]["containers"][0]["args"]
    assert args[-1] == "http://fg-facegrid-server.facegrid.svc:8000/readyz"
    assert "--fail-with-body" in args


def test_chart_files_are_yaml_or_templates():
    for p in Path(CHART).rglob("*"):
        if p.suffix in (".yaml", ".yml") and "templates" not in p.parts:
            list(yaml.safe_load_all(p.read_text()))


def permissions(docs: list[dict]) -> set[tuple]:
    """(apiGroup, resource, verb, resourceName or '*') granted by Roles/ClusterRoles."""
    out = set()
    for d in docs:
        if d["kind"] not in ("Role", "ClusterRole"):
            continue
        for r in d["rules"]:
            for g in r["apiGroups"]:
                for res in r["resources"]:
                    for v in r["verbs"]:
                        for n in r.get("resourceNames") or ["*"]:
                            out.add((g, res, v, n))
    return out


def test_operator_rbac_equals_operator_deploy_rbac(helm):
    """The chart grants the operator exactly the rules of operator/deploy/rbac.yaml
    (the operator's own least-privilege list, which the chart's templates read from
    their copy files/operator-rbac.yaml), no more, no less."""
    docs = helm.template(release="facegrid", namespace="facegrid")
    chart = permissions([d for d in docs if "operator" in d["metadata"]["name"]])
    ref = permissions([d for d in yaml.safe_load_all(
        (REPO / "operator" / "deploy" / "rbac.yaml").read_text()) if d])
    assert chart == ref, {"only in chart": sorted(chart - ref),
                          "only in operator/deploy": sorted(ref - chart)}


@pytest.mark.parametrize("values", [[], *[[v] for v in VALUES_FILES]],
                         ids=["defaults", *VALUES_FILES])
def test_rendered_env_builds_each_settings_class(render, values, monkeypatch, tmp_path):
    """Each component's Settings accepts the env the chart gives it (Secret values
    resolved from the rendered Secrets; mounted files written to tmp)."""
    from facegrid_operator.settings import OperatorSettings
    from facegrid_services.api.settings import ServerSettings
    from facegrid_services.notify.settings import NotifierSettings
    from facegrid_services.worker.settings import WorkerSettings

    docs = render(values=values)
    secrets = {n: s.get("stringData", {}) for n, s in by_kind(docs, "Secret").items()}
    (tmp_path / "signing.pub").write_text("unused")
    (tmp_path / "token").write_text("a" * 48)
    classes = {"server": ServerSettings, "worker": WorkerSettings, "operator": OperatorSettings,
               "notifier": NotifierSettings}
    for component, cls in classes.items():
        spec = by_kind(docs, "Deployment")[f"fg-facegrid-{component}"]["spec"]["template"]["spec"]
        with monkeypatch.context() as m:
            for e in spec["containers"][0]["env"]:
                if "value" in e:
                    value = e["value"]
                elif "secretKeyRef" in e["valueFrom"]:
                    ref = e["valueFrom"]["secretKeyRef"]
                    value = secrets.get(ref["name"], {}).get(ref["key"], "postgresql://x@y/z")
                else:  # fieldRef: metadata.namespace
                    value = "facegrid"
                if value.startswith("/etc/facegrid/"):
                    value = str(tmp_path / Path(value).name)
                m.setenv(e["name"], value)
            settings = cls()
        if hasattr(settings, "log_level"):
            assert settings.log_level == "INFO"
        if component == "operator":
            assert settings.admin_secret() == "a" * 48
            if "external.yaml" in values:  # the one given URL for every camera
                assert settings.node_redis_url_secret.endswith(":redis-url")
                assert settings.redis_admin_url is None
            else:  # each camera its own user, made through the operator's
                assert settings.node_redis_url_secret is None
                assert settings.redis_admin_url.startswith("redis://facegrid-operator:")
        if component == "server":
            assert settings.port == 8000 and settings.admin_secret() == "a" * 48


def test_notifier_and_the_optional_mqtt_broker(render):
    docs = render()
    env = env_of(docs, "Deployment", "fg-facegrid-notifier")
    assert env["FACEGRID_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == \
        "fg-facegrid-database"
    assert "FACEGRID_MQTT_URL" not in env and env["FACEGRID_METRICS_PORT"]["value"] == "9103"
    assert env_of(docs, "Deployment", "fg-facegrid-worker")["FACEGRID_NOTIFY"]["value"] == "true"
    off = render("--set", "notifier.enabled=false")
    assert "fg-facegrid-notifier" not in by_kind(off, "Deployment")
    assert env_of(off, "Deployment", "fg-facegrid-worker")["FACEGRID_NOTIFY"]["value"] == "false"
    dep = by_kind(docs, "Deployment")["fg-facegrid-notifier"]
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    pg = by_kind(docs, "NetworkPolicy")["fg-facegrid-postgresql"]
    allowed = pg["spec"]["ingress"][0]["from"][0]["podSelector"]["matchExpressions"][1]
    assert "notifier" in allowed["values"]

    full = render(values=["full.yaml"])
    env = env_of(full, "Deployment", "fg-facegrid-notifier")
    assert env["FACEGRID_MQTT_URL"]["value"] == "mqtt://fg-facegrid-mqtt:1883"
    assert env["FACEGRID_MQTT_DISCOVERY"]["value"] == "true"
    assert env["FACEGRID_MQTT_USERNAME"]["value"] == "facegrid"
    assert "fg-facegrid-mqtt" in by_kind(full, "Service")
    broker = by_kind(full, "Deployment")["fg-facegrid-mqtt"]["spec"]["template"]["spec"]
    assert broker["securityContext"]["runAsUser"] == 1883
    conf = by_kind(full, "ConfigMap")["fg-facegrid-mqtt"]["data"]["mosquitto.conf"]
    assert "persistence false" in conf
    policy = by_kind(full, "NetworkPolicy")["fg-facegrid-mqtt"]["spec"]["ingress"][0]["from"]
    assert policy[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "notifier"
    assert policy[1]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "home-assistant"}
