"""The reconciler core: one resctrl monitoring group per pod, every thread in it.

Pure and synchronous (see architecture §4.2): :class:`Reconciler` takes lifecycle
messages and the time, does filesystem work only through its two seams
(:class:`~resctrl_pipeline.resctrl.groups.ResctrlGroups` and
:class:`~resctrl_pipeline.cgroups.CgroupView`) and returns group messages. Its direct
API is :meth:`~Reconciler.handle`, :meth:`~Reconciler.on_retry_timer`,
:meth:`~Reconciler.snapshot`, :meth:`~Reconciler.statistics` and
:meth:`~Reconciler.health_line`; the :class:`~resctrl_pipeline.core.Core` hooks put
it on the ``lifecycle`` → ``groups`` edges of the actor shell, with a ``retry`` timer
every ``reconcile.retry_interval`` and a ``health`` timer.

Modules: :mod:`.pods` (pod bookkeeping), :mod:`.pod_groups` (group operations),
:mod:`.placement` (thread placement), :mod:`.reconciler` (the core wiring them).

Rules, in the order a pass applies them:

1. Remove: a pod is gone on PodDown, when a snapshot no longer lists it, or when its
   cgroup (seen before) has disappeared; its group is removed. Prefix groups of no
   known pod are orphans, removed once they have been orphans for ``orphan_grace``
   (at least twice the longer of the retry interval and the listener's snapshot
   period, so a group the StartContainer fast path created survives until the pod's
   next snapshot even when its PodUp was dropped). Nothing is removed by inference
   before the first snapshot, and nothing without the prefix ever.
2. Create: a live pod without a group gets one (mkdir; EEXIST adopts it). When no RMID
   is free the pod waits and is retried, oldest first, on every pass.
3. Threads: every TID of every running container not yet in the group is written,
   one per write, re-reading until stable (at most ``max_passes`` writing rounds).
"""

from __future__ import annotations

from resctrl_pipeline.reconcile.reconciler import GroupMessage, LifecycleMessage, Reconciler

__all__ = ["GroupMessage", "LifecycleMessage", "Reconciler"]
