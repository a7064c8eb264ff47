"""Thread placement: inheritance by threads and children created after joining, and
the snapshot/survey/apply protocol under concurrent moves."""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from resctrl_pipeline.emulator.placement import TaskPlacement, survey
from resctrl_pipeline.emulator.resctrltree import ResctrlTree
from resctrl_pipeline.emulator.threads import boot_ticks
from tests.emulator.support import Child
from tests.support import poll_until


def join_group(tree: ResctrlTree, group: str, tid: int) -> None:
    """Write ``tid`` to the group, then wait for the next clock tick so that threads
    created from now on start strictly after the join."""
    tree.write(tree.resolve(f"/mon_groups/{group}/tasks"), f"{tid}\n".encode(), writer_tid=1)
    joined = boot_ticks()
    poll_until(lambda: boot_ticks() > joined, what="next clock tick")


@pytest.mark.slow
def test_new_threads_and_children_inherit_but_older_threads_do_not(
    spawn: Callable[[], Child],
) -> None:
    child = spawn()
    older = int(child.ask("thread"))
    tree = ResctrlTree()
    tree.mkdir("/mon_groups/g")
    join_group(tree, "g", child.pid)
    newer = int(child.ask("thread"))
    grandchild = int(child.ask("fork"))
    members = tree.groups()["g"].tids
    assert {child.pid, newer, grandchild} <= members
    assert older not in members
    assert tree.group_of(older) == ""


@pytest.mark.slow
def test_a_thread_placed_explicitly_is_not_adopted_later(spawn: Callable[[], Child]) -> None:
    child = spawn()
    tree = ResctrlTree()
    tree.mkdir("/mon_groups/g")
    join_group(tree, "g", child.pid)
    newer = int(child.ask("thread"))
    tree.write(tree.resolve("/tasks"), f"{newer}\n".encode(), writer_tid=1)
    assert newer not in tree.groups()["g"].tids
    assert tree.group_of(newer) == ""


def test_apply_keeps_a_placement_that_changed_after_the_snapshot() -> None:
    missing = 2**22 + 12345  # above pid_max: never a real thread
    assert not os.path.exists(f"/proc/{missing}")
    placement: TaskPlacement[str] = TaskPlacement("root")
    placement.move(missing, "a", start_ticks=1, tgid=missing, now_ticks=1)
    found = survey(placement.snapshot(), "root")
    assert missing in found.gone
    placement.move(missing, "b", start_ticks=2, tgid=missing, now_ticks=2)
    placement.apply(found, is_live=lambda g: True)
    assert placement.group_of(missing) == "b"
    placement.apply(survey(placement.snapshot(), "root"), is_live=lambda g: True)
    assert placement.group_of(missing) == "root"


def test_evacuate_returns_threads_to_the_default_group() -> None:
    placement: TaskPlacement[str] = TaskPlacement("root")
    assert placement.move(5, "a", start_ticks=1, tgid=5, now_ticks=1)
    assert not placement.move(5, "a", start_ticks=1, tgid=5, now_ticks=2)
    assert not placement.move(6, "root", start_ticks=1, tgid=6, now_ticks=2)
    placement.evacuate("a", now_ticks=3)
    assert placement.members("a") == []
    assert placement.members("root") == [5, 6]
