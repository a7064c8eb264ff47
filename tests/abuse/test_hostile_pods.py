"""Hostile pod uids, names, container ids and cgroup paths through the emulated
runtime: no path outside ``mon_groups``, rejections counted and logged (escaped, and
once per uid), labels stored verbatim, other pods unaffected."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from resctrl_pipeline.podid import is_valid_uid
from tests.abuse.conftest import Witness
from tests.faults.harness import PREFIX
from tests.prerequisites import requires
from tests.support import poll_until

pytestmark = [pytest.mark.slow, requires("fuse")]

FORGED = "2030-01-01 00:00:00,000 CRITICAL forged: log line"
#: The forged line comes first: the listener's fast-path warning (rate-limited to one a
#: minute) then shows this uid, the worst one, rather than a harmless one.
HOSTILE_UIDS = [
    f"\n{FORGED}",
    "..",
    ".",
    "../../../../tmp/rp-escape",
    "a/b",
    "/",
    "x\x00y",
    "line\nbreak",
    "u" * 10240,
    "ünïcødé☃",
    "",
    " ",
    "pod_x/..",
    "a" * 64,
    "$(touch /tmp/rp-pwned)",
    "%2e%2e%2f",
    "\t",
    "a\\b",
]
HOSTILE_NAMES = [
    "..",
    "../../etc/passwd",
    "a/b",
    "nul\x00inside",
    f"new\n{FORGED}",
    "x" * 10240,
    "ünïcødé ☃ 名前",
    "",
    "\t",
    "'; DROP TABLE pods; --",
]
HOSTILE_CGROUPS = [
    "/../../../../../../etc",
    "kubepods/../../../..",
    ":cri-containerd:../../..",
    "kubepods-pod.slice:cri-containerd:../../x",
    "/kubepods/\x00/x",
    "",
]


def test_hostile_uids_names_and_paths_are_contained(pipeline: Witness) -> None:
    h = pipeline.h
    rt = h.node.runtime
    tree = h.node.fs.tree
    resctrl_entries = set(os.listdir(h.node.resctrl_root))
    rejected = h.counter("reconciler", "uids_rejected")
    sleepers: list[subprocess.Popen[bytes]] = []

    def sleeper() -> int:
        sleepers.append(subprocess.Popen(["sleep", "100000"], stdin=subprocess.DEVNULL))
        return sleepers[-1].pid

    try:
        # Hostile uids (the cgroup parent never comes from the uid: the emulated
        # cgroup tree is the test's own and must not be written outside its root).
        for i, uid in enumerate(HOSTILE_UIDS):
            rt.add_pod(uid, "hostile", f"uid-{i}", "/kubepods/besteffort/podhostile")
            rt.add_container(
                uuid.uuid4().hex * 2,
                uid,
                f"/kubepods/besteffort/pod{uid}/c",
                sleeper(),
                name=f"c{i}",
            )
        # Valid uids with hostile labels: labels are data, kept verbatim.
        named = []
        for i, name in enumerate(HOSTILE_NAMES):
            pod = h.node.new_pod("idle", name=name, namespace=HOSTILE_NAMES[-1 - i])
            h.start_sleep_pod(pod)
            named.append(pod)
        # A valid pod whose containers have hostile ids and cgroup paths.
        climber = str(uuid.uuid4())
        rt.add_pod(climber, "hostile", "climber", "/kubepods/besteffort/pod" + climber)
        for i, path in enumerate(HOSTILE_CGROUPS):
            rt.add_container(
                f"../../{i}" if i % 2 else uuid.uuid4().hex * 2,
                climber,
                path,
                sleeper(),
                name=f"climb{i}",
            )
        rt.wait_until(rt.idle, 20)

        distinct = len(set(HOSTILE_UIDS))
        poll_until(
            lambda: h.counter("reconciler", "uids_rejected") >= rejected + distinct,
            20,
            what="every hostile uid rejected",
        )
        h.wait_groups(named)
        poll_until(lambda: PREFIX + climber in tree.groups(), 20, what="the climber's group")
        # Its containers' cgroup paths resolve to nothing: counted, never followed.
        poll_until(
            lambda: h.gauge("reconciler", "containers_unresolved") >= len(HOSTILE_CGROUPS),
            20,
            what="the climbing containers unresolved",
        )
        groups = set(tree.groups())
        assert all(g.startswith(PREFIX) and is_valid_uid(g[len(PREFIX) :]) for g in groups)
        assert groups == {PREFIX + p.uid for p in [*pipeline.pods, *named]} | {PREFIX + climber}
        assert set(os.listdir(h.node.resctrl_root)) == resctrl_entries
        assert sorted(os.listdir(os.path.join(h.node.resctrl_root, "mon_groups"))) == sorted(groups)
        assert not os.path.exists("/tmp/rp-escape") and not os.path.exists("/tmp/rp-pwned")

        # Labels arrive verbatim in the Parquet rows.
        want = {p.uid: (p.namespace, p.name) for p in named}
        got = poll_until(
            lambda: {
                r["pod_uid"]: (r["pod_namespace"], r["pod_name"])
                for r in h.rotate_and_rows()
                if r["pod_uid"] in want and r["pod_name"] is not None
            },
            30,
            what="rows of the hostile-named pods",
        )
        poll_until(
            lambda: (
                set(got) == set(want)
                or got.update(
                    {
                        r["pod_uid"]: (r["pod_namespace"], r["pod_name"])
                        for r in h.rotate_and_rows()
                        if r["pod_uid"] in want and r["pod_name"] is not None
                    }
                )
            ),
            30,
            what="rows of every hostile-named pod",
        )
        assert got == want

        # Logs: rejections said once per uid, escaped; no forged line, no 10 kB line.
        lines = h.log_text().splitlines()
        assert any("rejected pod uid" in line for line in lines)
        assert not any(line.startswith(FORGED[:10]) for line in lines), "log injection"
        assert max(len(line) for line in lines) < 2048, "an unbounded value was logged"

        for uid in HOSTILE_UIDS:
            rt.remove_pod(uid)
        rt.remove_pod(climber)
        for pod in named:
            h.node.stop_pod(pod)
        poll_until(
            lambda: set(tree.groups()) == {PREFIX + p.uid for p in pipeline.pods},
            20,
            what="only the witnesses' groups left",
        )
    finally:
        for p in sleepers:
            p.kill()
            p.wait()
    pipeline.check()
