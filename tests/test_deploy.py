"""Deployment artefacts: the Dockerfile, the Kubernetes manifests and the operator docs.

None of these can run here (no container engine, no cluster), so the tests check
what would break a deployment: manifests that the API server would reject (validated
offline against the Kubernetes JSON schemas that ``kubernetes-validate`` ships), a
ConfigMap the agent would refuse, mounts that miss a configured path, an image whose
build context lacks a file or whose entrypoint is not installed, and docs that drifted
from the configuration schema.
"""

from __future__ import annotations

import ast
import copy
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import setuptools
import yaml
from click.testing import CliRunner

from resctrl_pipeline.cli import main
from resctrl_pipeline.config import Config, load, render_markdown, resolve
from tests.prerequisites import kustomize_command, requires

REPO = Path(__file__).resolve().parent.parent
K8S = REPO / "deploy" / "kubernetes"
BASE = K8S / "base"
OVERLAY = K8S / "overlays" / "example"
#: The oldest Kubernetes release the manifests promise to work with, and the newest
#: whose schemas the installed kubernetes-validate ships.
K8S_VERSIONS = ("1.28", kubernetes_validate.latest_version())
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


# --- helpers ------------------------------------------------------------------------------


def manifests(directory: Path) -> list[dict[str, Any]]:
    """Every Kubernetes object in the YAML files of ``directory`` (not kustomizations)."""
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def kind(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [d for d in docs if d["kind"] == name]
    return found


def config_from_toml(text: str, tmp_path: Path) -> Config:
    path = tmp_path / "config.toml"
    path.write_text(text)
    # As in the pod: NODE_NAME is the only variable the manifests set besides secrets.
    return resolve(load(path, environ={"NODE_NAME": "node-a"}))


def covered(path: str, mounts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The volume mount that contains ``path`` (the longest matching mount path)."""
    best = max(
        (m for m in mounts if path == m or path.startswith(m.rstrip("/") + "/")),
        key=len,
        default=None,
    )
    assert best is not None, f"{path} is not on any volume mount"
    return mounts[best]


def dockerfile_instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` pairs of the Dockerfile, continuations joined."""
    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def dockerignored(rel: str) -> bool:
    """Docker's rule: the last pattern matching the path or a parent decides."""
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()]
    patterns = [p for p in patterns if p and not p.startswith("#")]
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern.lstrip("!").rstrip("/")
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*")
        if any(re.fullmatch(regex, c) for c in candidates):
            ignored = not negate
    return ignored


# --- Kubernetes manifests -----------------------------------------------------------------


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_every_manifest_validates_against_the_kubernetes_schemas(version: str) -> None:
    docs = manifests(BASE)
    assert {d["kind"] for d in docs} == {"Namespace", "ConfigMap", "DaemonSet"}
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    "mistake",
    [
        lambda ds: ds["spec"]["template"]["spec"].update(hostPid=True),  # misspelt field
        lambda ds: ds["spec"]["template"]["spec"]["containers"][0]["ports"][0].update(
            containerPort="8080"
        ),
        lambda ds: ds["spec"].pop("selector"),
    ],
)
def test_schema_validation_rejects_a_broken_daemonset(mistake: Any) -> None:
    daemonset = copy.deepcopy(kind(manifests(BASE), "DaemonSet"))
    mistake(daemonset)
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, K8S_VERSIONS[0], strict=True)


def test_the_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((BASE / "kustomization.yaml").read_text())["resources"]
    on_disk = sorted(p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(listed) == on_disk


def test_configmap_is_a_valid_config_whose_paths_are_all_mounted(tmp_path: Path) -> None:
    docs = manifests(BASE)
    configmap, daemonset = kind(docs, "ConfigMap"), kind(docs, "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    cfg = config_from_toml(configmap["data"]["config.toml"], tmp_path)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    host_path = {
        m["mountPath"]: volumes[m["name"]].get("hostPath", {}).get("path")
        for m in container["volumeMounts"]
    }

    # The configured host facilities are the host's, where the issue says they are.
    assert host_path[covered(cfg.resctrl_root, mounts)["mountPath"]] == "/sys/fs/resctrl"
    cgroup = covered(cfg.cgroup_root, mounts)
    assert host_path[cgroup["mountPath"]] == "/sys/fs/cgroup" and cgroup["readOnly"]
    assert host_path[covered(os.path.dirname(cfg.nri_socket), mounts)["mountPath"]] == (
        "/var/run/nri"
    )
    for data_dir in (cfg.output_dir, cfg.spool_dir):  # on the node's disk: survive restarts
        assert host_path[covered(data_dir, mounts)["mountPath"]] == "/var/lib/resctrl-pipeline"
    runtime = volumes[covered(cfg.runtime_dir, mounts)["name"]]
    assert "emptyDir" in runtime
    # Everything the agent writes is on a writable mount (the root filesystem is not).
    for writable in (cfg.resctrl_root, cfg.output_dir, cfg.spool_dir, cfg.runtime_dir, "/tmp"):
        assert not covered(writable, mounts).get("readOnly", False), writable
    # The config file is where the container's --config points.
    config_mount = covered("/etc/resctrl-pipeline/config.toml", mounts)
    assert volumes[config_mount["name"]]["configMap"]["name"] == configmap["metadata"]["name"]
    args = container["args"]
    assert args[args.index("--config") + 1] == config_mount["mountPath"] + "/config.toml"


def test_probes_reach_the_http_endpoints_on_the_pod_ip(tmp_path: Path) -> None:
    docs = manifests(BASE)
    cfg = config_from_toml(kind(docs, "ConfigMap")["data"]["config.toml"], tmp_path)
    (container,) = kind(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    host, _, port = cfg.http_addr.rpartition(":")
    assert host == "0.0.0.0", "127.0.0.1 would not be reachable by the kubelet's probes"
    (http,) = [p for p in container["ports"] if p["name"] == "http"]
    assert http["containerPort"] == int(port)
    assert container["livenessProbe"]["httpGet"] == {"path": "/live", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}


def test_the_pod_gets_host_pids_and_no_capabilities() -> None:
    pod = kind(manifests(BASE), "DaemonSet")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert pod["hostPID"] is True and not pod.get("hostNetwork", False)
    assert pod["automountServiceAccountToken"] is False
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_node_name_and_s3_credentials_come_from_the_pod_and_a_secret() -> None:
    (container,) = kind(manifests(BASE), "DaemonSet")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e["valueFrom"] for e in container["env"]}
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        # optional: the Secret need not exist while the output is local.
        assert env[name]["secretKeyRef"] == {
            "name": "resctrl-pipeline-s3",
            "key": name,
            "optional": True,
        }
    doc = (REPO / "docs" / "operations.md").read_text()
    assert "create secret generic resctrl-pipeline-s3" in doc


def test_the_container_runs_the_images_console_script_with_accepted_arguments() -> None:
    (container,) = kind(manifests(BASE), "DaemonSet")["spec"]["template"]["spec"]["containers"]
    entrypoint = cmd = None
    for word, rest in dockerfile_instructions():
        if word == "ENTRYPOINT":
            entrypoint = yaml.safe_load(rest)
        elif word == "CMD":
            cmd = yaml.safe_load(rest)
    assert container["command"] == entrypoint and container["args"] == cmd
    assert entrypoint is not None and entrypoint[0] in PYPROJECT["project"]["scripts"]
    result = CliRunner().invoke(main, [*container["args"], "--help"])
    assert result.exit_code == 0, result.output


@pytest.mark.slow
@requires("kustomize")
def test_kustomize_renders_the_base_and_the_example_overlay(tmp_path: Path) -> None:
    render = kustomize_command()
    assert render is not None
    for directory in (BASE, OVERLAY):
        rendered = subprocess.run(
            [*render, str(directory)], check=True, capture_output=True, text=True
        ).stdout
        docs = [d for d in yaml.safe_load_all(rendered) if d]
        for doc in docs:
            kubernetes_validate.validate(doc, K8S_VERSIONS[0], strict=True)
    (container,) = kind(docs, "DaemonSet")["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "registry.example.com/resctrl-pipeline:0.1.0"
    cfg = config_from_toml(kind(docs, "ConfigMap")["data"]["config.toml"], tmp_path)
    assert cfg.output_dir.startswith("s3://") and cfg.partitioning == "hive"


def test_the_example_overlays_config_is_valid(tmp_path: Path) -> None:
    cfg = config_from_toml((OVERLAY / "config.toml").read_text(), tmp_path)
    assert cfg.output_dir == "s3://resctrl-metrics/occupancy" and cfg.s3_path_style


# --- the container image ------------------------------------------------------------------


def test_dockerfile_is_multi_stage_on_slim_python_with_no_build_step_in_the_final_image() -> None:
    steps = dockerfile_instructions()
    args = dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)
    stages = [i for i, (w, _) in enumerate(steps) if w == "FROM"]
    assert len(stages) >= 2
    for i in stages:
        image = shlex.split(steps[i][1])[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", image), image
        minor = int(image.split(".")[1].split("-")[0])
        assert minor >= int(PYPROJECT["project"]["requires-python"].split(".")[1])
    final = steps[stages[-1] + 1 :]
    # Only files from the build stage, metadata and the command: no RUN, so no package
    # manager, compiler or pip step can leave anything behind in the final image.
    assert {w for w, _ in final} <= {"LABEL", "COPY", "ENV", "USER", "ENTRYPOINT", "CMD"}
    assert all(a.startswith("--from=") for w, a in final if w == "COPY")


def test_the_build_context_holds_everything_pip_install_reads() -> None:
    """What the build stage copies (after .dockerignore) is what ``pip install .`` needs:
    the project file, its readme, every package with its data files, and the
    functions the console scripts name. (Checked without building: a build here
    would need the network for its build backend.)"""
    context: set[str] = set()
    for word, rest in dockerfile_instructions():
        if word != "COPY" or rest.startswith("--from="):
            continue
        *sources, dest = shlex.split(rest)
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: no such file"
            assert not dockerignored(source), f"COPY {source}: excluded by .dockerignore"
            # The build stage mirrors the repository layout under its WORKDIR.
            assert dest in ("./", f"./{source}"), f"COPY {source} {dest}"
            for path in [REPO / source, *(REPO / source).rglob("*")]:
                rel = path.relative_to(REPO).as_posix()
                if path.is_file() and not dockerignored(rel):
                    context.add(rel)
    assert not dockerignored("resctrl_pipeline/cli.py") and dockerignored(".venv/bin/python")
    assert dockerignored("resctrl_pipeline/__pycache__/cli.cpython-311.pyc")

    project, tool = PYPROJECT["project"], PYPROJECT["tool"]["setuptools"]
    assert {"pyproject.toml", project["readme"]} <= context
    packages = setuptools.find_packages(str(REPO), include=tool["packages"]["find"]["include"])
    assert "resctrl_pipeline.storage" in packages
    for package in packages:
        assert package.replace(".", "/") + "/__init__.py" in context, package
    for package, patterns in tool["package-data"].items():
        for pattern in patterns:
            found = list((REPO / package).glob(pattern))
            assert found and all(f.relative_to(REPO).as_posix() in context for f in found)
    for script, target in project["scripts"].items():
        module, _, function = target.partition(":")
        rel = module.replace(".", "/") + ".py"
        assert rel in context, script
        tree = ast.parse((REPO / rel).read_text())
        assert function in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}, script


# --- docs ----------------------------------------------------------------------------------

BEGIN = "<!-- BEGIN config reference: generated by resctrl_pipeline.config.render_markdown -->"
END = "<!-- END config reference -->"


def test_operations_doc_embeds_the_generated_configuration_reference() -> None:
    doc = (REPO / "docs" / "operations.md").read_text()
    table = doc.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    assert table == render_markdown(), (
        "regenerate the table between the markers with: resctrl-pipeline config --markdown"
    )


def slugs(markdown: str) -> set[str]:
    """GitHub's anchors of the headings in ``markdown``."""
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.M | re.S)  # not code comments
    titles = re.findall(r"^#+ (.+)$", prose, re.M)
    return {re.sub(r"[^\w\- ]", "", t.lower()).replace(" ", "-") for t in titles}


@pytest.mark.parametrize("doc", ["operations.md", "analysis.md"])
def test_relative_links_and_anchors_in_the_docs_resolve(doc: str) -> None:
    text = (REPO / "docs" / doc).read_text()
    links = re.findall(r"\]\(([^)\s:]*)\)", text)
    assert links
    broken = []
    for link in links:
        target, _, anchor = link.partition("#")
        path = REPO / "docs" / target if target else REPO / "docs" / doc
        if not path.exists() or (anchor and anchor not in slugs(path.read_text())):
            broken.append(link)
    assert broken == []
