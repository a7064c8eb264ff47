"""What an RDT-enabled container runtime does to resctrl, for the emulated node.

Reproduced (``shared/reference/resctrl-modern.md`` §4–5), through plain ``os`` calls on
the mount, as runc/crun and containerd's goresctrl make them:

* a container with an RDT class (OCI ``closID``): its init process is written to
  ``<class>/tasks`` (runc writes it before exec, so every thread of the process is in
  the class; here every TID present is written);
* with monitoring (``runtime-groups`` profile; runc ≥ 1.4 / crun ≥ 1.24 with
  ``intelRdt.enableMonitoring``): ``mkdir <CLOS>/mon_groups/<container-id>`` (CLOS =
  the class, or the root for ``closID "/"``) and the process written there; the group
  is removed when the container is deleted (``ENOENT`` ignored); failing to create it
  (no RMIDs) fails the container;
* at runtime start-up (goresctrl ``SetConfig(force)``): every *empty* MON group under
  the root and every class is removed, whoever made it.

Must not be called with the resctrl tree's lock held (it uses the mount).
"""

from __future__ import annotations

import contextlib
import logging
import os

__all__ = ["RuntimeRdt"]

log = logging.getLogger(__name__)


class RuntimeRdt:
    """The runtime's resctrl side.

    Args:
        resctrl_root: the resctrl mount.
        monitoring: make a MON group per container (``runtime-groups``).
    """

    def __init__(self, resctrl_root: str, *, monitoring: bool) -> None:
        self.resctrl_root = resctrl_root
        self.monitoring = monitoring

    def mon_group(self, container_id: str, rdt_class: str = "") -> str:
        """The path of the MON group the runtime makes for a container."""
        return os.path.join(self.resctrl_root, rdt_class, "mon_groups", container_id)

    def container_created(self, container_id: str, pid: int, rdt_class: str = "") -> None:
        """Place a new container's process (``pid`` 0: none) in its class and, with
        monitoring, in its own MON group.

        Raises:
            OSError: the class is missing, or the MON group cannot be made (e.g.
                ``ENOSPC`` out of RMIDs): the runtime fails the container.
        """
        if rdt_class and pid:
            self._write_all(os.path.join(self.resctrl_root, rdt_class, "tasks"), pid)
        if not self.monitoring:
            return
        path = self.mon_group(container_id, rdt_class)
        os.mkdir(path)
        if pid:
            self._write_all(os.path.join(path, "tasks"), pid)

    def container_deleted(self, container_id: str, rdt_class: str = "") -> None:
        """Remove the container's MON group, if monitoring made one."""
        if self.monitoring:
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(self.mon_group(container_id, rdt_class))

    def prune(self) -> list[str]:
        """Remove every empty MON group under the root and every class, as goresctrl
        does when the runtime starts; returns the paths removed."""
        removed = []
        controls = [self.resctrl_root]
        for name in sorted(os.listdir(self.resctrl_root)):
            if os.path.isdir(os.path.join(self.resctrl_root, name, "mon_groups")):
                controls.append(os.path.join(self.resctrl_root, name))
        for ctrl in controls:
            mon_groups = os.path.join(ctrl, "mon_groups")
            for name in sorted(os.listdir(mon_groups)):
                path = os.path.join(mon_groups, name)
                try:
                    with open(os.path.join(path, "tasks")) as f:
                        empty = not f.read().strip()
                    if empty:
                        os.rmdir(path)
                        removed.append(path)
                except FileNotFoundError:
                    continue  # removed meanwhile
        log.info("runtime start-up pruned %d empty MON groups", len(removed))
        return removed

    def _write_all(self, tasks: str, pid: int) -> None:
        """Write every TID of ``pid`` (one per write); threads that exited meanwhile
        (``ESRCH``) are skipped, as goresctrl's ``AddPids`` does."""
        try:
            tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        except FileNotFoundError:
            tids = [pid]
        fd = os.open(tasks, os.O_WRONLY)
        try:
            for tid in tids:
                with contextlib.suppress(ProcessLookupError):
                    os.write(fd, f"{tid}\n".encode())
        finally:
            os.close(fd)
