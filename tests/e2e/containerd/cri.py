"""A small CRI client: what a kubelet does to run pods, and no more.

Every pod is host-network (no CNI, no hostname), gets a kubelet-like cgroup parent
``/kubepods/<qos>/pod<uid>`` and the label :data:`HARNESS_LABEL`, so the harness can
find and remove exactly its own pods. Messages are the generated CRI protobufs
(untyped here: they are generated at test time).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .cri_stubs import CriModules

__all__ = ["HARNESS_LABEL", "CriClient", "CriError", "Pod"]

HARNESS_LABEL: Final = ("resctrl-pipeline.e2e/harness", "1")
"""Label on every pod and container the harness creates."""

_UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_QOS = ("besteffort", "burstable")


class CriError(Exception):
    """A CRI call failed; the message names the call and carries the runtime's text."""


@dataclass(frozen=True, slots=True)
class Pod:
    """A pod sandbox the client started.

    Attributes:
        id: the sandbox id containerd gave it.
        uid, namespace, name: Kubernetes metadata as sent.
        cgroup_parent: the CRI ``cgroup_parent`` (``/kubepods/<qos>/pod<uid>``).
        config: the PodSandboxConfig (needed again to create containers).
    """

    id: str
    uid: str
    namespace: str
    name: str
    cgroup_parent: str
    config: Any = field(repr=False, compare=False)


def pod_cgroup_parent(uid: str, qos: str = "besteffort") -> str:
    """The kubelet's cgroupfs-driver parent for a pod: ``/kubepods/<qos>/pod<uid>``.

    Raises:
        ValueError: ``uid`` is not a canonical UUID or ``qos`` is unknown (the result
            becomes a cgroup path, so nothing else is accepted).
    """
    if not _UID.fullmatch(uid) or qos not in _QOS:
        raise ValueError(f"refusing cgroup parent for uid {uid!r}, qos {qos!r}")
    return f"/kubepods/{qos}/pod{uid}"


class CriClient:
    """Synchronous CRI RuntimeService calls over containerd's unix socket.

    Args:
        cri: the generated modules.
        address: containerd's socket.
        timeout: seconds for each call.
        on_pod: called with each pod's cgroup parent before RunPodSandbox (the
            harness removes those cgroups at teardown).
    """

    def __init__(
        self,
        cri: CriModules,
        address: Path,
        timeout: float = 30.0,
        on_pod: Callable[[str], object] | None = None,
    ) -> None:
        import grpc  # type: ignore[import-untyped]

        self._grpc = grpc
        self.pb = cri.pb
        self._channel = grpc.insecure_channel(f"unix://{address}")
        self._rt = cri.grpc.RuntimeServiceStub(self._channel)
        self._images = cri.grpc.ImageServiceStub(self._channel)
        self._timeout = timeout
        self._on_pod = on_pod

    def close(self) -> None:
        """Close the channel (idempotent)."""
        self._channel.close()

    def __enter__(self) -> CriClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: str, request: Any, service: Any = None) -> Any:
        try:
            return getattr(service or self._rt, method)(request, timeout=self._timeout)
        except self._grpc.RpcError as err:
            raise CriError(f"CRI {method} failed: {err.code().name}: {err.details()}") from err

    # --- runtime ------------------------------------------------------------------

    def version(self) -> tuple[str, str]:
        """``(runtime_name, runtime_version)`` as CRI reports them."""
        resp = self._call("Version", self.pb.VersionRequest())
        return resp.runtime_name, resp.runtime_version

    def runtime_ready(self) -> bool:
        """Whether CRI answers and reports RuntimeReady (NetworkReady is not needed)."""
        try:
            resp = self._call("Status", self.pb.StatusRequest())
        except CriError:
            return False
        return any(c.type == "RuntimeReady" and c.status for c in resp.status.conditions)

    def image_present(self, ref: str) -> bool:
        """Whether CRI's image service knows ``ref`` (ImageStatus)."""
        req = self.pb.ImageStatusRequest(image=self.pb.ImageSpec(image=ref))
        try:
            return bool(self._call("ImageStatus", req, self._images).image.id)
        except CriError:
            return False

    # --- pods ---------------------------------------------------------------------

    def _namespaces(self) -> Any:
        pb = self.pb
        return pb.NamespaceOption(network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD)

    def run_pod(
        self,
        name: str,
        namespace: str = "e2e",
        *,
        uid: str | None = None,
        qos: str = "besteffort",
        labels: Mapping[str, str] | None = None,
    ) -> Pod:
        """RunPodSandbox for a host-network pod with a kubelet-like cgroup parent.

        Raises:
            CriError: the runtime refused.
        """
        pb = self.pb
        uid = uid or str(uuid.uuid4())
        parent = pod_cgroup_parent(uid, qos)
        if self._on_pod is not None:
            self._on_pod(parent)
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=namespace, attempt=0),
            labels={**(labels or {}), HARNESS_LABEL[0]: HARNESS_LABEL[1]},
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent=parent,
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=self._namespaces()
                ),
            ),
        )
        resp = self._call("RunPodSandbox", pb.RunPodSandboxRequest(config=config))
        return Pod(resp.pod_sandbox_id, uid, namespace, name, parent, config)

    def stop_pod(self, pod_id: str) -> None:
        """StopPodSandbox (stops its containers)."""
        self._call("StopPodSandbox", self.pb.StopPodSandboxRequest(pod_sandbox_id=pod_id))

    def remove_pod(self, pod_id: str) -> None:
        """StopPodSandbox then RemovePodSandbox (removes its containers too)."""
        self.stop_pod(pod_id)
        self._call("RemovePodSandbox", self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id))

    def list_pods(self, *, harness_only: bool = True) -> list[Any]:
        """PodSandbox entries, by default only those carrying :data:`HARNESS_LABEL`."""
        pb = self.pb
        selector = {HARNESS_LABEL[0]: HARNESS_LABEL[1]} if harness_only else {}
        flt = pb.PodSandboxFilter(label_selector=selector)
        return list(self._call("ListPodSandbox", pb.ListPodSandboxRequest(filter=flt)).items)

    def remove_harness_pods(self) -> list[Any]:
        """Remove every pod with :data:`HARNESS_LABEL`; return the removed entries."""
        pods = self.list_pods()
        for item in pods:
            self.remove_pod(item.id)
        return pods

    # --- containers ---------------------------------------------------------------

    def create_container(
        self,
        pod: Pod,
        name: str,
        image: str,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> str:
        """CreateContainer in ``pod`` running ``image`` (its entrypoint) with ``args``.

        Returns the container id.
        """
        pb = self.pb
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=0),
            image=pb.ImageSpec(image=image),
            args=list(args),
            envs=[pb.KeyValue(key=k, value=v) for k, v in (env or {}).items()],
            labels={HARNESS_LABEL[0]: HARNESS_LABEL[1]},
            linux=pb.LinuxContainerConfig(
                security_context=pb.LinuxContainerSecurityContext(
                    namespace_options=self._namespaces()
                )
            ),
        )
        req = pb.CreateContainerRequest(
            pod_sandbox_id=pod.id, config=config, sandbox_config=pod.config
        )
        return str(self._call("CreateContainer", req).container_id)

    def start_container(self, container_id: str) -> None:
        """StartContainer."""
        self._call("StartContainer", self.pb.StartContainerRequest(container_id=container_id))

    def run_container(self, pod: Pod, name: str, image: str, args: Sequence[str] = ()) -> str:
        """Create and start a container; return its id."""
        cid = self.create_container(pod, name, image, args)
        self.start_container(cid)
        return cid

    def stop_container(self, container_id: str, timeout: int = 0) -> None:
        """StopContainer (``timeout`` seconds of grace before SIGKILL)."""
        req = self.pb.StopContainerRequest(container_id=container_id, timeout=timeout)
        self._call("StopContainer", req)

    def remove_container(self, container_id: str) -> None:
        """RemoveContainer."""
        self._call("RemoveContainer", self.pb.RemoveContainerRequest(container_id=container_id))

    def exec_sync(
        self, container_id: str, cmd: Sequence[str], timeout: int = 0
    ) -> tuple[int, bytes, bytes]:
        """ExecSync: run ``cmd`` in the container (as ``kubectl exec`` does) until it
        exits or ``timeout`` seconds pass (0: no limit); ``(exit code, stdout, stderr)``."""
        req = self.pb.ExecSyncRequest(container_id=container_id, cmd=list(cmd), timeout=timeout)
        resp = self._call("ExecSync", req)
        return int(resp.exit_code), bytes(resp.stdout), bytes(resp.stderr)

    def list_containers(self, pod_id: str | None = None) -> list[Any]:
        """Container entries, optionally of one pod."""
        pb = self.pb
        flt = pb.ContainerFilter(pod_sandbox_id=pod_id or "")
        return list(self._call("ListContainers", pb.ListContainersRequest(filter=flt)).containers)

    def container_status(self, container_id: str) -> tuple[str, int]:
        """``(state name, pid)``; the pid comes from the verbose info (0 if none)."""
        req = self.pb.ContainerStatusRequest(container_id=container_id, verbose=True)
        resp = self._call("ContainerStatus", req)
        state = self.pb.ContainerState.Name(resp.status.state)
        info = json.loads(resp.info.get("info", "{}") or "{}")
        return state, int(info.get("pid", 0))
