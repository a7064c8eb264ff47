"""Who talks to whom: every endpoint, its binding side and its high-water mark.

* ``lifecycle``: nri-listener PUSH → reconciler PULL (pods, containers, snapshots).
* ``metadata``: nri-listener PUSH → sampler PULL (pod uid → namespace, name).
* ``groups``: reconciler PUSH → sampler PULL (group state per pod).
* ``occupancy``: sampler PUSH → writer PULL (columnar sample batches).
* ``stats``: every actor PUSH → supervisor PULL (heartbeats with counters).

The consumer (PULL) side binds, producers connect: a restarted consumer is reconnected
automatically and a restarted producer simply connects again. Endpoints are ``ipc://``
sockets in the private runtime directory; the HWM of every data edge is
``pipeline.channel_capacity`` (no library defaults), so a slow consumer costs dropped,
counted messages, never a blocked producer.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["ACTORS", "EDGES", "HEARTBEAT_INTERVAL", "Edge", "edges_from", "edges_into", "endpoint"]

#: Seconds between two heartbeats (ActorStats on ``stats``) of an actor; the supervisor
#: calls an actor silent after three of them.
HEARTBEAT_INTERVAL = 1.0

#: Actor names, in start order (consumers first, so their sockets are bound early).
ACTORS: tuple[str, ...] = ("writer", "sampler", "reconciler", "nri-listener")


@dataclass(frozen=True, slots=True)
class Edge:
    """One PUSH/PULL edge: the producers connect, the consumer binds."""

    name: str
    producers: tuple[str, ...]
    consumer: str
    #: What one message is, for the drop log ("Dropped N <what> in the last second").
    what: str
    #: Whether the edge carries state (deltas + snapshots) that must converge after drops.
    stateful: bool


EDGES: dict[str, Edge] = {
    e.name: e
    for e in (
        Edge("lifecycle", ("nri-listener",), "reconciler", "lifecycle events", True),
        Edge("metadata", ("nri-listener",), "sampler", "metadata events", True),
        Edge("groups", ("reconciler",), "sampler", "group events", True),
        Edge("occupancy", ("sampler",), "writer", "occupancy batches", False),
        Edge("stats", ("writer", "sampler", "reconciler", "nri-listener"), "supervisor",
             "stats messages", False),
    )
}  # fmt: skip


def endpoint(runtime_dir: str, edge: str) -> str:
    """The ``ipc://`` address of an edge inside the runtime directory."""
    if edge not in EDGES:
        raise KeyError(edge)
    return f"ipc://{os.path.join(runtime_dir, edge + '.sock')}"


def edges_into(actor: str) -> tuple[str, ...]:
    """Edges the actor consumes (binds a PULL socket for)."""
    return tuple(e.name for e in EDGES.values() if e.consumer == actor)


def edges_from(actor: str) -> tuple[str, ...]:
    """Edges the actor produces on (connects a PUSH socket for)."""
    return tuple(e.name for e in EDGES.values() if actor in e.producers)
