"""deploy/kubernetes/: a relay node on each labelled Kubernetes node, all on one PostgreSQL
database (deploy/kubernetes/README.md).

The kustomization is rendered here as kustomize renders it, in Python and for the fields it
uses only (any other is refused rather than rendered wrong), and compared with `kubectl
kustomize` where kubectl or kustomize is installed. Every object it makes, and the Secret
template it leaves out, is validated against Kubernetes' OpenAPI schemas as JSON schemas, which
the kubernetes-validate package bundles (offline), strictly: an unknown field is an error. Then
what relay needs of them: `relay serve` on the host's network; settings that relay's own
`resolve` accepts, under names it reads; secrets only from Secrets, and placeholders in the
template that relay refuses; probes on /healthz over HTTPS; a non-root, read-only container; a
preStop hook that drains the node within the grace period, and that hook (drain.py) run against
a stand-in for the node's API.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shutil
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

import relay
from cli.main import build_parser
from control import credentials
from control.settings import NAMES, SettingsError, resolve
from node.serve import CONTROL_STOP_TIMEOUT
from relay.supervisor import STOP_TIMEOUT
from tests.pki import Authority, ServerFiles, server_files

pytestmark = pytest.mark.release_only  # tests/conftest.py: files and a script, no packets

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"
HOOK = K8S / "drain.py"
TEMPLATES = ("secret.yaml",)  # validated, never applied by the kustomization
# What tests/test_kubernetes.py's renderer implements of kustomize; anything else is refused.
KUSTOMIZE_FIELDS = {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "images"}
CLUSTER_SCOPED = {"Namespace"}
# The oldest Kubernetes these manifests are for, and the newest the package has schemas of.
VERSIONS = ("1.30", kubernetes_validate.latest_version())
# Secrets: they reach the pod from the Secret relay-secrets, never as a value in a manifest.
SECRET_VARIABLES = {"RELAY_TOKEN", "RELAY_BOX_KEY", "RELAY_PII_KEY", "RELAY_DB", "RELAY_SMTP_URL"}
SECRET = "relay-secrets"
TLS_SECRET = "relay-tls"
NODE_NAME = "ip-10-0-1-23.ec2.internal"  # what spec.nodeName gives, for resolve()
HOST_IP = "203.0.113.7"  # what status.hostIP gives


# --- rendering ----------------------------------------------------------------------------------


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def kustomization() -> dict[str, Any]:
    found = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert isinstance(found, dict)
    return found


def _split_image(reference: str) -> tuple[str, str, str]:
    """(name, tag, digest) of an image reference; a registry's port is part of the name."""
    reference, _, digest = reference.partition("@")
    colon = reference.rfind(":")
    if colon > reference.rfind("/"):
        return reference[:colon], reference[colon + 1 :], digest
    return reference, "", digest


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    if doc["kind"] in ("DaemonSet", "Deployment", "StatefulSet", "ReplicaSet", "Job"):
        spec: dict[str, Any] = doc["spec"]["template"]["spec"]
        return spec
    return None


def containers(spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from spec.get("initContainers", [])
    yield from spec["containers"]


def render() -> list[dict[str, Any]]:
    """kustomization.yaml's objects, as `kustomize build` makes them."""
    k = kustomization()
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert k["kind"] == "Kustomization"
    unknown = set(k) - KUSTOMIZE_FIELDS
    assert not unknown, f"kustomization.yaml uses {unknown}, which this test does not render"
    docs = [doc for name in k["resources"] for doc in load_all(K8S / name)]
    for generator in k.get("configMapGenerator", []):
        assert set(generator) <= {"name", "files", "options"}, generator
        # With a name suffix the name would be kustomize's hash of the data: not rendered here.
        assert generator.get("options") == {"disableNameSuffixHash": True}, generator
        data = {}
        for entry in generator["files"]:
            key, _, path = entry.rpartition("=")
            data[key or Path(path).name] = (K8S / path).read_text()
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    namespace = k.get("namespace")
    for doc in docs:
        if namespace and doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = namespace
        spec = pod_spec(doc)
        for image in k.get("images", []):
            assert set(image) <= {"name", "newName", "newTag", "digest"}, image
            for container in containers(spec) if spec is not None else ():
                name, tag, digest = _split_image(container["image"])
                if name != image["name"]:
                    continue
                name, tag = image.get("newName", name), image.get("newTag", tag)
                digest = image.get("digest", digest)
                container["image"] = name + (f":{tag}" if tag and not digest else "")
                container["image"] += f"@{digest}" if digest else ""
    return docs


@functools.cache
def _rendered() -> tuple[dict[str, Any], ...]:
    return tuple(render())


def rendered() -> list[dict[str, Any]]:
    return copy.deepcopy(list(_rendered()))


def templates() -> list[dict[str, Any]]:
    return [doc for name in TEMPLATES for doc in load_all(K8S / name)]


def the(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        doc
        for doc in rendered()
        if doc["kind"] == kind and (name is None or doc["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"{len(found)} {kind} {name or ''}"
    return found[0]


def daemonset_pod() -> dict[str, Any]:
    spec = pod_spec(the("DaemonSet", "relay"))
    assert spec is not None
    return spec


def relay_container(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = [c for c in containers(pod) if c["name"] == "relay"]
    assert isinstance(container, dict)
    return container


def mount_path(pod: dict[str, Any], container: dict[str, Any], **source: str) -> str:
    """Where `container` mounts the volume of this source: secret="relay-tls",
    configMap="relay-hooks", hostPath="/var/lib/relay"."""
    ((kind, name),) = source.items()
    field = {"secret": "secretName", "hostPath": "path"}.get(kind, "name")
    (volume,) = [v for v in pod["volumes"] if v.get(kind, {}).get(field) == name]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    path: str = mount["mountPath"]
    return path


def key(doc: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = doc["metadata"]
    return doc["apiVersion"], doc["kind"], meta.get("namespace", ""), meta["name"]


# --- the files and the schemas ------------------------------------------------------------------


def test_every_file_is_rendered_or_a_template() -> None:
    k = kustomization()
    generated = [
        entry.rpartition("=")[2] for g in k.get("configMapGenerator", []) for entry in g["files"]
    ]
    expected = {"kustomization.yaml", "README.md", *k["resources"], *generated, *TEMPLATES}
    assert {path.name for path in K8S.iterdir()} - {"__pycache__"} == expected
    docs = rendered()
    assert len({key(doc) for doc in docs}) == len(docs), "an object is there twice"
    assert {doc["kind"] for doc in docs} >= {
        "Namespace",
        "ConfigMap",
        "DaemonSet",
        "Service",
        "PodDisruptionBudget",
    }
    namespace = the("Namespace")["metadata"]["name"]
    assert k["namespace"] == namespace
    for doc in docs + templates():
        if doc["kind"] not in CLUSTER_SCOPED:
            assert doc["metadata"]["namespace"] == namespace, key(doc)


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_kubernetes(version: str) -> None:
    for doc in rendered() + templates():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(part) for part in exc.path)
            pytest.fail(f"{key(doc)} is not valid Kubernetes {version}: {where}: {exc.message}")


def test_the_validation_is_strict() -> None:
    """A misspelt field fails: the schemas refuse what they do not define."""
    daemonset = the("DaemonSet", "relay")
    relay_container(pod_spec(daemonset) or {})["readinesProbe"] = {"periodSeconds": 5}
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(daemonset, VERSIONS[-1], strict=True)


def test_the_rendering_is_kustomizes() -> None:
    if shutil.which("kustomize"):
        command = ["kustomize", "build", str(K8S)]
    elif shutil.which("kubectl"):
        command = ["kubectl", "kustomize", str(K8S)]
    else:
        pytest.skip("neither kustomize nor kubectl is installed")
    built = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    theirs = [doc for doc in yaml.safe_load_all(built.stdout) if doc is not None]
    assert {key(doc): doc for doc in theirs} == {key(doc): doc for doc in rendered()}


# --- relay serve on the host's network ----------------------------------------------------------


def test_the_daemonset_runs_relay_serve_on_the_hosts_network() -> None:
    daemonset = the("DaemonSet", "relay")
    pod = daemonset_pod()
    container = relay_container(pod)
    assert container["command"][:2] == ["relay", "serve"]
    assert "args" not in container
    assert pod["hostNetwork"] is True
    assert pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["nodeSelector"], "one pod per labelled node, not on every node"
    assert pod["automountServiceAccountToken"] is False
    # The old pod leaves the host's ports before its successor takes them.
    rolling = daemonset["spec"]["updateStrategy"]["rollingUpdate"]
    assert rolling["maxSurge"] == 0
    # The image deploy/docker/Dockerfile builds, at relay's version.
    version = relay.__version__
    for each in containers(pod):
        assert _split_image(each["image"])[0].rsplit("/", 1)[-1] == "relay"
        assert _split_image(each["image"])[1] == version


def test_service_and_budget_select_the_relay_pods() -> None:
    daemonset = the("DaemonSet", "relay")
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    container = relay_container(daemonset_pod())
    ports = {port["name"]: port for port in container["ports"]}
    assert daemonset["spec"]["selector"]["matchLabels"].items() <= labels.items()

    service = the("Service", "relay-api")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert ports[port["targetPort"]]["protocol"] == "TCP"
    assert port["port"] == ports[port["targetPort"]]["containerPort"]

    budget = the("PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    assert "minAvailable" not in budget["spec"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()


# --- settings -----------------------------------------------------------------------------------


class Reads(dict[str, str]):
    """An environment that notes every name looked up in it."""

    def __init__(self) -> None:
        super().__init__()
        self.read: set[str] = set()

    def get(self, name: str, default: Any = None) -> Any:
        self.read.add(name)
        return super().get(name, default)

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return super().__getitem__(name)

    def __contains__(self, name: object) -> bool:
        self.read.add(str(name))
        return super().__contains__(name)


def variables_relay_reads(data_dir: Path) -> set[str]:
    """RELAY_<NAME> for every setting (control/settings.py), and the secrets that
    control/credentials.py reads from the environment, found by watching it read them."""
    environ = Reads()
    resolve({}, environ)
    credentials.operator_token(data_dir, environ)
    credentials.box_key(data_dir, environ)
    credentials.pii_key(data_dir, environ)
    assert {f"RELAY_{name.upper()}" for name in NAMES} <= environ.read
    return {name for name in environ.read if name.startswith("RELAY_")}


def pod_environment(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet makes it, with stand-ins for the node's
    fields and for the secrets."""
    configmaps = {doc["metadata"]["name"]: doc for doc in rendered() if doc["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(configmaps[source["configMapRef"]["name"]]["data"])
    fields = {"spec.nodeName": NODE_NAME, "status.hostIP": HOST_IP}
    secrets = {
        "RELAY_TOKEN": "t" * 43,
        "RELAY_BOX_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "RELAY_PII_KEY": "HxwdHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=",
        "RELAY_DB": "postgresql://relay:password@db.example.internal:5432/relay",
    }
    for entry in container["env"]:
        given = entry.get("valueFrom", {})
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif "fieldRef" in given:
            env[entry["name"]] = fields[given["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in given:
            ref = given["secretKeyRef"]
            if ref["key"] in secrets:
                env[entry["name"]] = secrets[ref["key"]]
            else:
                assert ref.get("optional") is True, f"{ref['key']} has no stand-in here"
    return env


def test_the_environment_holds_only_names_relay_reads(tmp_path: Path) -> None:
    pod = daemonset_pod()
    for container in containers(pod):
        names = [entry["name"] for entry in container.get("env", [])]
        assert len(names) == len(set(names))
        for source in container.get("envFrom", []):
            assert set(source) == {"configMapRef"}, "secrets come one by one (secretKeyRef)"
            data = the("ConfigMap", source["configMapRef"]["name"])["data"]
            # An env entry would silently win over the ConfigMap's value: say it in one place.
            assert not set(data) & set(names)
            names += list(data)
        unknown = set(names) - variables_relay_reads(tmp_path)
        assert not unknown, f"{container['name']}: relay reads no {sorted(unknown)}"
    field = {
        entry["name"]: entry["valueFrom"]["fieldRef"]["fieldPath"]
        for entry in relay_container(pod)["env"]
        if "fieldRef" in entry.get("valueFrom", {})
    }
    assert field.get("RELAY_NODE_NAME") == "spec.nodeName"
    assert field.get("RELAY_PUBLIC_HOST") == "status.hostIP"


def test_relay_serve_accepts_the_pods_settings(tmp_path: Path) -> None:
    """The command line and environment the pod gets, through relay serve's own parser and
    `resolve`, with a certificate at the paths the pod mounts its TLS Secret at."""
    pod = daemonset_pod()
    container = relay_container(pod)
    env = pod_environment(pod, container)
    tls = mount_path(pod, container, secret=TLS_SECRET)
    assert env["RELAY_TLS_CERT"] == f"{tls}/tls.crt"  # the keys of a kubernetes.io/tls Secret
    assert env["RELAY_TLS_KEY"] == f"{tls}/tls.key"
    files = server_files(tmp_path / "tls", Authority.new(), hosts=("relay.example.org",))
    env.update(RELAY_TLS_CERT=str(files.cert), RELAY_TLS_KEY=str(files.key))
    args = build_parser().parse_args(container["command"][1:])
    settings = resolve(vars(args), env)

    assert settings.node == NODE_NAME
    assert settings.advertised_host == HOST_IP
    assert settings.tls and not settings.plain_http
    assert settings.db.startswith("postgresql://")
    data = mount_path(pod, container, hostPath="/var/lib/relay")
    assert str(settings.data_dir) == data
    credentials.operator_token(tmp_path, env)
    credentials.box_key(tmp_path, env)
    credentials.pii_key(tmp_path, env)

    # The ports the pod declares (the host's, with hostNetwork) are the ones relay takes.
    tcp = {p["containerPort"] for p in container["ports"] if p["protocol"] == "TCP"}
    udp = sorted(p["containerPort"] for p in container["ports"] if p["protocol"] == "UDP")
    assert tcp == {settings.api_port}
    assert udp == list(range(settings.media_port, settings.media_port + 2 * settings.workers))
    api = {p["name"] for p in container["ports"] if p["containerPort"] == settings.api_port}
    assert api == {"api"}
    # A core a worker and one for the control plane, and Guaranteed QoS.
    for each in containers(pod):
        assert each["resources"]["requests"] == each["resources"]["limits"], each["name"]
    assert int(container["resources"]["limits"]["cpu"]) == settings.workers + 1


def test_secrets_reach_the_pod_only_from_secrets() -> None:
    pod = daemonset_pod()
    template = {doc["metadata"]["name"]: doc for doc in templates()}[SECRET]
    placeholders = set(template["stringData"].values())
    assert set(template["stringData"]) <= SECRET_VARIABLES
    for container in containers(pod):
        for entry in container.get("env", []):
            if entry["name"] in SECRET_VARIABLES:
                ref = entry["valueFrom"]["secretKeyRef"]
                assert ref["name"] == SECRET and ref["key"] == entry["name"]
                assert ref["key"] in template["stringData"] or ref.get("optional") is True
            assert "value" not in entry or entry["value"] not in placeholders
            secret_ref = entry.get("valueFrom", {}).get("secretKeyRef")
            assert secret_ref is None or entry["name"] in SECRET_VARIABLES, entry["name"]
        for source in container.get("envFrom", []):
            assert "secretRef" not in source
    for doc in rendered():
        assert doc["kind"] != "Secret", "the kustomization would overwrite the real Secret"
        if doc["kind"] == "ConfigMap":
            assert not set(doc.get("data", {})) & SECRET_VARIABLES
    secret_volumes = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secret_volumes == {TLS_SECRET}
    # Nothing that looks like a database URL or a key anywhere in what is applied.
    applied = json.dumps(rendered())
    assert "postgresql://" not in applied
    assert "REPLACE-ME" not in applied


def test_the_secret_templates_placeholders_are_refused(tmp_path: Path) -> None:
    """Applied as it is, the template starts no node: relay refuses each placeholder."""
    values = {doc["metadata"]["name"]: doc for doc in templates()}[SECRET]["stringData"]
    assert set(values) == SECRET_VARIABLES - {"RELAY_SMTP_URL"}  # the optional one: commented
    assert all("REPLACE-ME" in value for value in values.values())
    with pytest.raises(SettingsError):
        credentials.operator_token(tmp_path, {"RELAY_TOKEN": values["RELAY_TOKEN"]})
    with pytest.raises(SettingsError):
        credentials.box_key(tmp_path, {"RELAY_BOX_KEY": values["RELAY_BOX_KEY"]})
    with pytest.raises(SettingsError):
        credentials.pii_key(tmp_path, {"RELAY_PII_KEY": values["RELAY_PII_KEY"]})
    database = urlsplit(values["RELAY_DB"])
    assert database.scheme == "postgresql"
    assert (database.hostname or "").endswith(".invalid")  # RFC 2606: never resolves


# --- probes, security, stopping -----------------------------------------------------------------


def test_probes_ask_healthz_over_https() -> None:
    container = relay_container(daemonset_pod())
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"], get["scheme"]) == ("/healthz", "api", "HTTPS"), probe


def test_relay_runs_as_the_images_user_on_a_read_only_root() -> None:
    pod = daemonset_pod()
    container = relay_container(pod)
    uid = int(re.findall(r"--uid (\d+)", DOCKERFILE.read_text())[0])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == uid
    security = container["securityContext"]
    assert security.get("runAsUser", uid) == uid and security.get("runAsNonRoot", True)
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"] == {"drop": ["ALL"]}
    # What it writes has a volume: the data directory (on the host) and /tmp.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert not mounts["/tmp"].get("readOnly")
    assert not mounts[container["command"][container["command"].index("--data-dir") + 1]].get(
        "readOnly"
    )
    # The one step as root gives the data directory to that user, and may do nothing else.
    for init in pod.get("initContainers", []):
        security = init["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["readOnlyRootFilesystem"] is True
        assert security["capabilities"]["drop"] == ["ALL"]
        assert set(security["capabilities"].get("add", [])) <= {"CHOWN", "FOWNER"}
        assert f"{uid}:{uid}" in " ".join(init["command"])


def test_the_prestop_hook_drains_within_the_grace_period() -> None:
    pod = daemonset_pod()
    container = relay_container(pod)
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    hooks = mount_path(pod, container, configMap="relay-hooks")
    assert command[:2] == ["python", f"{hooks}/drain.py"]
    assert the("ConfigMap", "relay-hooks")["data"]["drain.py"] == HOOK.read_text()
    wait = float(command[command.index("--wait") + 1])
    grace = pod["terminationGracePeriodSeconds"]
    # After the hook, relay serve stops its workers, then its control plane (node/serve.py).
    assert wait + STOP_TIMEOUT + CONTROL_STOP_TIMEOUT + 10 <= grace
    assert wait >= 30 * 60, "long enough for most meetings to end"


# --- the hook against a stand-in API ------------------------------------------------------------


class StandIn:
    """A node's API over HTTPS as far as the hook uses it: POST .../drain and GET /v1/nodes,
    the node's load taken from `loads` one GET at a time (the last one stays)."""

    def __init__(self, files: ServerFiles, name: str, loads: list[int]) -> None:
        self.name = name
        self.loads = loads
        self.calls: list[tuple[str, str, str]] = []
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, body: Any) -> None:
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _note(self) -> None:
                stand_in.calls.append(
                    (self.command, self.path, self.headers.get("Authorization", ""))
                )

            def do_POST(self) -> None:
                self._note()
                self._answer({"name": stand_in.name, "load": stand_in.loads[0]})

            def do_GET(self) -> None:
                self._note()
                load = stand_in.loads.pop(0) if len(stand_in.loads) > 1 else stand_in.loads[0]
                self._answer([{"name": "other", "load": 7}, {"name": stand_in.name, "load": load}])

            def log_message(self, format: str, *args: Any) -> None:
                pass

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(files.cert, files.key)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> StandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_hook(port: int, cert: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "RELAY_NODE_NAME": NODE_NAME,
        "RELAY_TOKEN": "operator-token-0123456789",
        "RELAY_API": f"0.0.0.0:{port}",
        "RELAY_TLS_CERT": str(cert),
        "RELAY_LOG_FORMAT": "json",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(HOOK), *args], env=env, capture_output=True, text=True, timeout=30
    )
    return done, time.monotonic() - started


def messages(stderr: str) -> list[str]:
    return [json.loads(line)["message"] for line in stderr.splitlines()]


@pytest.fixture(scope="module")
def authority() -> Authority:
    return Authority.new()


def test_the_hook_drains_then_waits_for_the_participants(
    tmp_path: Path, authority: Authority
) -> None:
    # The certificate names the public host, not 127.0.0.1: the hook pins it instead.
    files = server_files(tmp_path, authority, hosts=("relay.example.org",))
    with StandIn(files, NODE_NAME, [3, 3, 1, 0]) as api:
        done, _ = run_hook(api.port, files.cert, "--wait", "20", "--every", "0.02")
    assert done.returncode == 0, done.stderr
    auth = "Bearer operator-token-0123456789"
    assert api.calls[0] == ("POST", f"/v1/nodes/{NODE_NAME}/drain", auth)
    assert [call[:2] for call in api.calls[1:]] == [("GET", "/v1/nodes")] * 4
    assert {call[2] for call in api.calls} == {auth}
    said = messages(done.stderr)
    assert said[0] == f"node {NODE_NAME} is draining: 3 participant(s) present"
    assert said[-1] == f"node {NODE_NAME}: no participants left"


def test_the_hook_stops_waiting_at_its_deadline(tmp_path: Path, authority: Authority) -> None:
    files = server_files(tmp_path, authority, hosts=("relay.example.org",))
    with StandIn(files, NODE_NAME, [2]) as api:
        done, took = run_hook(api.port, files.cert, "--wait", "0.3", "--every", "0.05")
    assert done.returncode == 0, done.stderr
    assert took < 5
    assert "still present at the deadline" in messages(done.stderr)[-1]


def test_the_hook_sends_the_token_to_no_other_certificate(
    tmp_path: Path, authority: Authority
) -> None:
    """Another certificate from the same CA, for the same name, is not the node's."""
    node = server_files(tmp_path / "node", authority, hosts=("relay.example.org",))
    other = server_files(tmp_path / "other", authority, hosts=("relay.example.org",))
    with StandIn(other, NODE_NAME, [0]) as api:
        done, _ = run_hook(api.port, node.cert, "--wait", "5", "--every", "0.05")
    assert done.returncode == 1
    assert api.calls == []
    assert "does not present RELAY_TLS_CERT's certificate" in messages(done.stderr)[-1]
