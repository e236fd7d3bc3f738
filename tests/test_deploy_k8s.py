"""k8s/ manifests: schema-valid (offline, bundled schemas) and the properties operators rely on."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from streamer.settings.file import FILE_VARIABLE, parse_config_text
from streamer.settings.model import Settings, load_settings
from tests.contract_doc import PENDING_VARIABLES, contract_variables

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
KNOWN_ENV = {name.upper() for name in Settings.model_fields}
# Oldest supported Kubernetes minor and the newest schema the validator bundles.
K8S_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
# A kustomize file, not an API object; Prometheus Operator kinds (no bundled schema: checked by
# tests/test_deploy_monitoring.py).
NOT_SCHEMA_CHECKED = {"Kustomization", "PrometheusRule", "ServiceMonitor"}
# An example the docs tell you to create yourself: never applied by `kubectl apply -k k8s/`.
EXAMPLE_SECRET = K8S / "examples" / "secret.example.yaml"

Doc = dict[str, Any]


def load_docs() -> list[tuple[str, Doc]]:
    """(file name, document) for every YAML document under k8s/."""
    out: list[tuple[str, Doc]] = []
    for path in sorted(K8S.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                assert isinstance(doc, dict), path.name
                out.append((path.name, doc))
    return out


DOCS = load_docs()
OBJECTS = [(f, d) for f, d in DOCS if d["kind"] not in NOT_SCHEMA_CHECKED]
SECRET: Doc = yaml.safe_load(EXAMPLE_SECRET.read_text())


def find(kind: str, name: str) -> Doc:
    """The one object of this kind and name."""
    hits = [d for _, d in OBJECTS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(hits) == 1, (kind, name, len(hits))
    return hits[0]


def pod_spec(workload: Doc) -> Doc:
    """The pod spec of a Deployment or Job."""
    spec = workload["spec"]["template"]["spec"]
    assert isinstance(spec, dict)
    return spec


def container(workload: Doc) -> Doc:
    """The single container of a workload."""
    containers = pod_spec(workload)["containers"]
    assert len(containers) == 1
    c = containers[0]
    assert isinstance(c, dict)
    return c


def workloads() -> list[Doc]:
    """Every object that runs pods."""
    return [d for _, d in OBJECTS if d["kind"] in ("Deployment", "StatefulSet", "Job")]


def quantity(value: str | int) -> float:
    """Kubernetes CPU/memory quantity as a number (cores or bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 1e3, "M": 1e6, "G": 1e9}
    match = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text)
    assert match, text
    return float(match.group(1)) * units.get(match.group(2), 1)


def probe_port(c: Doc, probe: Doc) -> int:
    """Resolve a probe's named or numeric port to the container port number."""
    port = probe["httpGet"]["port"]
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in c["ports"]}
    return int(named[port])


CONFIG_KEY = "streamer.conf"  # the ConfigMap key: the file name inside the mounted directory


def config_file_values() -> dict[str, str]:
    """The settings of the ConfigMap's KEY=VALUE file, parsed by the project's own parser."""
    text = find("ConfigMap", "streamer-config")["data"][CONFIG_KEY]
    return parse_config_text(text, Settings.model_fields, CONFIG_KEY).values


def settings_env() -> dict[str, str]:
    """ConfigMap file values plus Secret stringData: the settings the pods get."""
    env = config_file_values()
    env.update(SECRET["stringData"])
    return {str(k): str(v) for k, v in env.items()}


class TestSchemas:
    """Every manifest parses and validates against the Kubernetes JSON schemas."""

    def test_manifests_present(self) -> None:
        """The set of objects the platform team needs."""
        kinds = sorted(d["kind"] for _, d in OBJECTS)
        assert "Secret" not in kinds  # apply -k must never overwrite the credentials
        for kind in ("ConfigMap", "Deployment", "HorizontalPodAutoscaler",
                     "PodDisruptionBudget", "Service"):
            assert kind in kinds
        assert kinds.count("Deployment") + kinds.count("StatefulSet") == 3  # worker, jobs, sink

    @pytest.mark.parametrize("version", K8S_VERSIONS)
    @pytest.mark.parametrize(("filename", "doc"), OBJECTS, ids=[f"{f}:{d['kind']}" for f, d in OBJECTS])
    def test_validates_strictly(self, filename: str, doc: Doc, version: str) -> None:
        """Strict schema: unknown or misplaced fields fail (bundled schemas, no network)."""
        kubernetes_validate.validate(doc, version, strict=True)

    def test_validator_rejects_a_typo(self) -> None:
        """The validator really checks: a misspelt field is an error."""
        bad = yaml.safe_load((K8S / "worker-deployment.yaml").read_text())
        bad["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 60
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, K8S_VERSIONS[-1], strict=True)

    def test_kustomization_lists_every_manifest(self) -> None:
        """`kubectl apply -k k8s/` applies every file and only existing ones."""
        kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
        files = {p.name for p in K8S.glob("*.y*ml")} - {"kustomization.yaml"}
        assert set(kustomization["resources"]) == files
        images = {i["name"] for i in kustomization["images"]}
        for w in workloads():
            assert container(w)["image"].split(":")[0] in images


class TestPods:
    """Every pod runs non-root, read-only, with requests and limits."""

    @pytest.mark.parametrize("workload", workloads(), ids=lambda w: w["metadata"]["name"])
    def test_non_root_uid_1000(self, workload: Doc) -> None:
        """runAsNonRoot with UID 1000 (the image's user), no privilege escalation."""
        sec = pod_spec(workload)["securityContext"]
        assert sec["runAsNonRoot"] is True
        assert sec["runAsUser"] == 1000
        c_sec = container(workload)["securityContext"]
        assert c_sec["allowPrivilegeEscalation"] is False
        assert c_sec["capabilities"]["drop"] == ["ALL"]
        assert c_sec.get("runAsUser", 1000) == 1000
        assert pod_spec(workload)["automountServiceAccountToken"] is False

    @pytest.mark.parametrize("workload", workloads(), ids=lambda w: w["metadata"]["name"])
    def test_resources_bounded(self, workload: Doc) -> None:
        """CPU and memory requests and limits are set, requests within limits."""
        res = container(workload)["resources"]
        for key in ("cpu", "memory"):
            assert quantity(res["requests"][key]) <= quantity(res["limits"][key]), key

    @pytest.mark.parametrize("workload", workloads(), ids=lambda w: w["metadata"]["name"])
    def test_writable_paths_are_volumes(self, workload: Doc) -> None:
        """With a read-only root, /tmp (and STREAMER_DATA_DIR for services) are mounted."""
        c = container(workload)
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert "/tmp" in mounts
        if workload["kind"] != "Job":
            assert settings_env()["STREAMER_DATA_DIR"] in mounts

    @pytest.mark.parametrize("workload", workloads(), ids=lambda w: w["metadata"]["name"])
    def test_config_is_a_mounted_file_and_credentials_the_secret(self, workload: Doc) -> None:
        """The ConfigMap is a directory volume (updated in place; a subPath mount would not
        be) that STREAMER_CONFIG_FILE points into; the Secret arrives via envFrom; no envFrom
        of the ConfigMap (the environment of a running pod never changes)."""
        c = container(workload)
        refs = {(next(iter(r)), next(iter(r.values()))["name"]) for r in c["envFrom"]}
        assert refs == {("secretRef", "streamer-credentials")}
        inline = {e["name"]: e.get("value") for e in c.get("env", [])}
        assert set(inline) <= KNOWN_ENV
        path = Path(str(inline[FILE_VARIABLE]))
        volumes = {v["name"]: v for v in pod_spec(workload)["volumes"]}
        mounts = [m for m in c["volumeMounts"] if "configMap" in volumes[m["name"]]]
        assert len(mounts) == 1
        mount = mounts[0]
        assert volumes[mount["name"]]["configMap"]["name"] == "streamer-config"
        assert "subPath" not in mount and mount.get("readOnly") is True
        assert Path(mount["mountPath"]) / CONFIG_KEY == path
        assert "items" not in volumes[mount["name"]]["configMap"]  # the key is the file name


class TestWorker:
    """The stream workers' Deployment."""

    @pytest.fixture
    def worker(self) -> Doc:
        """The worker Deployment."""
        return find("Deployment", "streamer-worker")

    def test_hpa_owns_replicas_rolling_update(self, worker: Doc) -> None:
        """No `replicas` to fight the HPA on apply; replaced one at a time, never below the count."""
        assert "replicas" not in worker["spec"]
        assert find("HorizontalPodAutoscaler", "streamer-worker")["spec"]["minReplicas"] >= 2
        strategy = worker["spec"]["strategy"]
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0

    def test_runs_the_worker_command(self, worker: Doc) -> None:
        """The container runs `streamer worker`."""
        assert container(worker)["command"] == ["streamer", "worker"]

    def test_probes(self, worker: Doc) -> None:
        """Liveness on /healthz, readiness on /readyz, both on STREAMER_WEB_PORT."""
        c = container(worker)
        port = int(settings_env()["STREAMER_WEB_PORT"])
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert probe_port(c, c[probe]) == port, probe

    def test_graceful_termination(self, worker: Doc) -> None:
        """60 s grace; the preStop pause leaves most of it to the worker's own shutdown."""
        spec = pod_spec(worker)
        assert spec["terminationGracePeriodSeconds"] == 60
        pre_stop = container(worker)["lifecycle"]["preStop"]["exec"]["command"]
        assert pre_stop[0] == "sleep"
        # The worker hard-exits 55 s after SIGTERM; preStop + 55 must stay under the grace.
        assert 0 < int(pre_stop[1]) <= 4

    def test_state_volume_choice_is_documented(self, worker: Doc) -> None:
        """The Deployment-vs-StatefulSet decision is written down where operators look."""
        ops = (ROOT / "docs" / "OPERATIONS.md").read_text()
        assert "Deployment or StatefulSet" in ops
        assert "docs/OPERATIONS.md" in (K8S / "worker-deployment.yaml").read_text()


class TestJobsStandby:
    """The ClickHouse-mode standby."""

    def test_jobs_deployment(self) -> None:
        """One replica of `streamer jobs` with both probes on the web port."""
        jobs = find("Deployment", "streamer-jobs")
        assert jobs["spec"]["replicas"] == 1
        c = container(jobs)
        assert c["command"] == ["streamer", "jobs"]
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert pod_spec(jobs)["terminationGracePeriodSeconds"] == 60


class TestScalingAndAvailability:
    """HPA, PodDisruptionBudget and the metrics Service."""

    def test_hpa_targets(self) -> None:
        """CPU 70 % and memory 80 % on the worker Deployment, never above the partition count."""
        hpa = find("HorizontalPodAutoscaler", "streamer-worker")
        ref = hpa["spec"]["scaleTargetRef"]
        assert (ref["kind"], ref["name"]) == ("Deployment", "streamer-worker")
        targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["spec"]["metrics"]}
        assert targets["cpu"] == {"type": "Utilization", "averageUtilization": 70}
        assert targets["memory"] == {"type": "Utilization", "averageUtilization": 80}
        partitions = int(settings_env()["STREAMER_TOPIC_PARTITIONS"])
        assert 2 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= partitions

    def test_pdb_keeps_one_worker(self) -> None:
        """At least one worker stays up through voluntary disruptions."""
        pdb = find("PodDisruptionBudget", "streamer-worker")
        assert pdb["spec"]["minAvailable"] == 1
        labels = find("Deployment", "streamer-worker")["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()

    def test_selectors_match_pod_labels(self) -> None:
        """Each Deployment's selector selects its own pod template."""
        for w in workloads():
            if w["kind"] == "Job":
                continue
            labels = w["spec"]["template"]["metadata"]["labels"]
            assert w["spec"]["selector"]["matchLabels"].items() <= labels.items()

    def test_metrics_service(self) -> None:
        """Scrape annotations, the web port, workers and jobs selected, not-ready pods too."""
        svc = find("Service", "streamer-metrics")
        ann = svc["metadata"]["annotations"]
        port = int(settings_env()["STREAMER_WEB_PORT"])
        assert ann["prometheus.io/scrape"] == "true"
        assert ann["prometheus.io/path"] == "/metrics"
        assert int(ann["prometheus.io/port"]) == port
        assert [p["port"] for p in svc["spec"]["ports"]] == [port]
        assert svc["spec"]["publishNotReadyAddresses"] is True
        selector = svc["spec"]["selector"].items()
        for name in ("streamer-worker", "streamer-jobs"):
            dep = find("Deployment", name)
            assert selector <= dep["spec"]["template"]["metadata"]["labels"].items()
            target = svc["spec"]["ports"][0]["targetPort"]
            assert target in {p["name"] for p in container(dep)["ports"]}


class TestConfiguration:
    """ConfigMap and Secret carry contract names and values that pass validation."""

    def test_names_are_settings(self) -> None:
        """Every key is a Settings field (lower-case field name = variable name)."""
        unknown = set(settings_env()) - KNOWN_ENV
        assert not unknown

    def test_values_validate(self) -> None:
        """The shipped values load without a ConfigError and use a ClickHouse server."""
        settings = load_settings(settings_env())
        assert not settings.clickhouse_embedded
        assert settings.log_format == "json"

    def test_the_file_loads_through_streamer_config_file(self, tmp_path: Path) -> None:
        """Written out as the kubelet does and named by STREAMER_CONFIG_FILE, with the Secret as
        environment: the same settings as the parsed values."""
        path = tmp_path / CONFIG_KEY
        path.write_text(find("ConfigMap", "streamer-config")["data"][CONFIG_KEY])
        env = {**SECRET["stringData"], FILE_VARIABLE: str(path)}
        via_file = load_settings(env)
        assert via_file.model_copy(update={"streamer_config_file": ""}) == load_settings(
            settings_env())
        assert via_file.streamer_topic_partitions == 12

    def test_credentials_only_in_secret(self) -> None:
        """URLs with credentials are in the Secret, never in the ConfigMap."""
        config = config_file_values()
        secret = SECRET["stringData"]
        assert {"CLICKHOUSE_URL", "REDIS_URL"} <= set(secret)
        assert not {"CLICKHOUSE_URL", "REDIS_URL"} & set(config)
        assert not any("@" in str(v) for v in config.values())

    def test_secret_is_a_marked_placeholder(self) -> None:
        """Placeholder credentials are obviously fake and labelled as such."""
        secret = SECRET
        assert "placeholder" in " ".join(secret["metadata"]["annotations"]).lower()
        assert all("CHANGE_ME" in v for v in secret["stringData"].values())
        assert "PLACEHOLDER" in EXAMPLE_SECRET.read_text()
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(SECRET, version, strict=True)

    def test_contract_variables_are_settings(self) -> None:
        """Every variable in the contract's Environment table (docs/CONTRACT.md) is a Settings field."""
        names = {n for n in contract_variables() if n not in PENDING_VARIABLES or n in KNOWN_ENV}
        assert len(names) >= 15
        assert names <= KNOWN_ENV, names - KNOWN_ENV
