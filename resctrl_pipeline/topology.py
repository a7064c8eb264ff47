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

__all__ = [
    "ACTORS",
    "EDGES",
    "HEARTBEAT_INTERVAL",
    "QUIET_HEARTBEAT_MAX",
    "Edge",
    "edges_from",
    "edges_into",
    "endpoint",
    "quiet_heartbeat_interval",
]

#: Seconds between two heartbeats (ActorStats on ``stats``) of an actor that did
#: something since its last one (received or sent a message, handled a signal or an
#: NRI event, failed a hook): counters and readiness reach ``/status`` within a second.
HEARTBEAT_INTERVAL = 1.0

#: Upper bound of the heartbeat period of an actor that did nothing since its last one.
#: A quiet actor's heartbeat only proves that its loop runs; sending it every second cost
#: an idle pipeline most of its CPU (four wake-ups of four processes and the supervisor).
QUIET_HEARTBEAT_MAX = 5.0


def quiet_heartbeat_interval(liveness_timeout: float) -> float:
    """Heartbeat period of a quiet actor under ``supervisor.liveness_timeout``.

    A sixth of the timeout, between :data:`HEARTBEAT_INTERVAL` and
    :data:`QUIET_HEARTBEAT_MAX`: the supervisor calls an actor silent (``/ready`` 503)
    after three quiet periods, and kills it after the timeout, so a hung actor is still
    noticed after three periods and killed only after six missed heartbeats at least.
    """
    return min(QUIET_HEARTBEAT_MAX, max(HEARTBEAT_INTERVAL, liveness_timeout / 6))


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
