"""PodBook, the reconciler's pure bookkeeping of pods and containers.

These cases came out of the mutation run (docs/testing.md): the scenario tests in
test_reconcile.py go through the whole reconciler, where a container that is never
forgotten or a replay that is taken for news does not always show in the group states.
"""

from __future__ import annotations

import logging
from collections import Counter

import pytest

from resctrl_pipeline.messages import ContainerDown, ContainerUp, PodUp
from resctrl_pipeline.reconcile.pods import Container, Pod, PodBook


def book() -> PodBook:
    return PodBook("pod_", Counter())


def settled(b: PodBook) -> PodBook:
    """Forget what the caller has handled already (the reconciler does this per pass)."""
    b.dirty.clear()
    b.to_sync.clear()
    return b


def test_container_down_forgets_the_container_of_a_known_pod() -> None:
    b = book()
    b.pod_up(PodUp("p1", "ns", "n"))
    b.container_up(ContainerUp("c1", "p1", "/kubepods/p1/c1"))
    b.container_up(ContainerUp("c2", "p1", "/kubepods/p1/c2"))
    settled(b)
    b.container_down(ContainerDown("c2", "p1"))
    assert list(b.pods["p1"].containers) == ["c1"]
    assert b.container_ids() == ["c1"]
    assert b.dirty == {"p1"}


def test_container_down_with_a_hostile_uid_is_refused() -> None:
    b = book()
    b.pod_up(PodUp("p1", "ns", "n"))
    b.container_up(ContainerUp("c1", "p1", "/kubepods/p1/c1"))
    b.container_down(ContainerDown("c1", "../p1"))
    assert b.container_ids() == ["c1"]


def wire(text: str) -> str:
    """A copy of ``text`` as a decoded message carries it: equal, not the same object."""
    return "".join(list(text))


def test_replayed_container_up_is_no_news() -> None:
    b = book()
    b.pod_up(PodUp("p1", "ns", "n"))
    b.container_up(ContainerUp("c1", "p1", "/kubepods/p1/c1"))
    pod = b.pods["p1"]
    assert [c.id for c in pod.running()] == ["c1"]
    assert pod.unreconciled()  # its threads are not placed yet
    b.pods["p1"].containers["c1"].reconciled = True
    settled(b)
    b.container_up(ContainerUp(wire("c1"), wire("p1"), wire("/kubepods/p1/c1")))
    assert b.to_sync == {} and b.dirty == set()
    assert b.pods["p1"].containers["c1"].reconciled  # its placement is kept


@pytest.mark.parametrize("path", ["/kubepods/p1/a-moved", "/kubepods/p1/z-moved"])
def test_container_up_with_another_cgroup_replaces_the_old_record(path: str) -> None:
    b = book()
    b.pod_up(PodUp("p1", "ns", "n"))
    b.container_up(ContainerUp("c1", "p1", "/kubepods/p1/c1"))
    b.pods["p1"].containers["c1"].reconciled = True
    settled(b)
    b.container_up(ContainerUp("c1", "p1", path))
    c = b.pods["p1"].containers["c1"]
    assert (c.cgroup_path, c.reconciled) == (path, False)
    assert b.to_sync == {"p1": {"c1"}}


@pytest.mark.parametrize(("first", "second"), [("p1", "p2"), ("p2", "p1")])
def test_container_that_moves_to_another_pod_leaves_the_first(first: str, second: str) -> None:
    b = book()
    for uid in (first, second):
        b.pod_up(PodUp(uid, "ns", uid))
    b.container_up(ContainerUp("c1", first, "/kubepods/c1"))
    b.container_up(ContainerUp("c1", second, "/kubepods/c1"))
    assert (list(b.pods[first].containers), list(b.pods[second].containers)) == ([], ["c1"])


@pytest.mark.parametrize("parent", ["/kubepods/a-pod", "/kubepods/z-pod"])
def test_pod_up_with_a_new_cgroup_parent_updates_the_pod(parent: str) -> None:
    b = book()
    b.pod_up(PodUp("p1", "ns", "n", "/kubepods/m-pod"))
    b.pods["p1"].pod_dir = "/sys/fs/cgroup/cpu/kubepods/m-pod"
    assert b.pod_up(PodUp("p1", "ns2", "n", parent, {"app": "x"})) is None  # not new
    pod = b.pods["p1"]
    assert (pod.cgroup_parent, pod.pod_dir) == (parent, None)  # looked up again
    assert (pod.namespace, pod.labels) == ("ns2", {"app": "x"})


def test_dropping_an_unknown_pod_forgets_its_waiting_containers() -> None:
    b = book()
    b.container_up(ContainerUp("c1", "p9", "/kubepods/p9/c1"))
    assert b.containers_without_pod() == 1
    assert b.drop_pod("p9") is None
    assert b.containers_without_pod() == 0 and b.container_ids() == []
    # The pod coming back later starts without the forgotten container.
    pod = b.pod_up(PodUp("p9", "ns", "n"))
    assert pod is not None and pod.containers == {}


def test_waiting_containers_join_their_pod() -> None:
    b = book()
    b.container_up(ContainerUp("c1", "p1", "/kubepods/p1/c1"))
    b.container_up(ContainerUp("c2", "p1", "/kubepods/p1/c2"))
    b.container_down(ContainerDown("c1"))
    assert b.containers_without_pod() == 1
    pod = b.pod_up(PodUp("p1", "ns", "n"))
    assert pod is not None and list(pod.containers) == ["c2"]
    assert "c2" in b.to_sync["p1"] and b.containers_without_pod() == 0


def test_unreconciled_means_a_running_container_is_not_placed() -> None:
    pod = Pod("p1", "pod_p1", "")
    assert not pod.unreconciled()
    pod.containers = {"a": Container("a", "p1", "/a", reconciled=True)}
    assert not pod.unreconciled()
    pod.containers["b"] = Container("b", "p1", "/b")
    assert pod.unreconciled()
    pod.containers["b"].exited = True  # an exited one is not waited for
    assert not pod.unreconciled()


def test_each_rejected_uid_is_logged_once_among_others(caplog: pytest.LogCaptureFixture) -> None:
    counters: Counter[str] = Counter()
    b = PodBook("pod_", counters)
    with caplog.at_level(logging.WARNING):
        for uid in ("../a", "../b", "../a", "../b"):
            assert b.pod_up(PodUp(uid, "ns", "n")) is None
    assert counters["uids_rejected"] == 4
    assert caplog.text.count("'../a'") == 1 and caplog.text.count("'../b'") == 1


def test_pod_up_replay_keeps_what_it_does_not_change() -> None:
    b = book()
    b.pod_up(PodUp("p1", "ns", "n", "/kubepods/m-pod"))
    b.pods["p1"].pod_dir = "/sys/fs/cgroup/cpu/kubepods/m-pod"
    for parent in ("", wire("/kubepods/m-pod")):  # unknown, or the same
        b.pod_up(PodUp("p1", "ns", "n", parent))
        pod = b.pods["p1"]
        assert (pod.cgroup_parent, pod.pod_dir) == (
            "/kubepods/m-pod",
            "/sys/fs/cgroup/cpu/kubepods/m-pod",
        )


def test_dropping_a_pod_forgets_its_containers() -> None:
    b = book()
    b.pod_up(PodUp("p1", "ns", "n"))
    b.container_up(ContainerUp("c1", "p1", "/kubepods/p1/c1"))
    settled(b)
    pod = b.drop_pod("p1")
    assert pod is not None and list(pod.containers) == ["c1"]
    assert b.container_ids() == [] and b.pods == {} and b.dirty == {"p1"}
    assert b.drop_pod("p1") is None
