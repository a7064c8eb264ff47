"""An emulated node for tests and ``demo``: resctrl, cgroups and the NRI runtime.

These machines have no resctrl hardware and often no cgroups of their own, so the
emulator serves the same paths and file formats the production code uses:

* :mod:`.resctrlfs`: :class:`~.resctrlfs.EmulatedResctrl` mounts a resctrl tree over
  FUSE (mfusepy + libfuse3, operations in :mod:`.resctrlops`), from a daemon thread
  or as its own process (``python -m resctrl_pipeline.emulator.resctrlfs --mount
  DIR``). Imported on its own: importing mfusepy fails where libfuse is missing.
* :mod:`.hardware`: hardware profiles (``classic``, ``snc``, ``abmc``, ``aet``,
  ``classes``, ``runtime-groups``, combined with ``+``) chosen per mount; ABMC
  counter assignment is :mod:`.assignment`, AET values :mod:`.telemetry`, and the
  runtime's resctrl side (classes, runtime-made MON groups) :mod:`.runtime_rdt`.
* :mod:`.resctrltree`: the tree itself, lock-protected and FUSE-free, with the
  test-side API (pin counters, RMID limit, limbo, groups); built from RMIDs and limbo
  (:mod:`.rmids`), thread placement checked against ``/proc`` (:mod:`.placement`),
  path names (:mod:`.resctrlnodes`), domains and SNC (:mod:`.topology`) and counter
  values (:mod:`.counters`).
* :mod:`.occupancy`: a pure model that moves the counters with the CPU time of each
  group's threads (read by :mod:`.threads` from ``/proc``), so a busy pod shows
  more cache.
* :mod:`.cgroupfs`: a cgroup tree of plain files whose thread lists mirror real
  processes.
* :mod:`.nri_runtime`: the containerd side of the NRI socket (I/O), over
  :mod:`.runtime_session` (the runtime's half of one plugin connection, sans-I/O) and
  :mod:`.runtime_events` (what containerd sends per pod/container operation).

See ``docs/emulator.md`` for what is emulated and what is not.
"""

from resctrl_pipeline.emulator.cgroupfs import EmulatedCgroups
from resctrl_pipeline.emulator.hardware import Hardware, parse_hardware
from resctrl_pipeline.emulator.occupancy import CacheParams, OccupancyModel
from resctrl_pipeline.emulator.resctrltree import ROOT, GroupInfo, ResctrlTree
from resctrl_pipeline.emulator.topology import Topology

__all__ = [
    "ROOT",
    "CacheParams",
    "EmulatedCgroups",
    "GroupInfo",
    "Hardware",
    "OccupancyModel",
    "ResctrlTree",
    "Topology",
    "parse_hardware",
]
