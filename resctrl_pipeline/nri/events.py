"""NRI events, the subscription mask, and one handler protocol per event.

Shaped like the reference Go stub: a handler object declares which events it wants
simply by having the matching methods (``run_pod_sandbox``, ``start_container``, …);
:func:`handled_events` finds them and :func:`event_mask` turns them into the mask sent
in the ConfigureResponse. Asking for an event without a handler is an error, so the
plugin never subscribes to something it would silently drop.

Every handler receives the decoded protobuf objects and returns nothing: the listener
is passive, so every reply is empty whatever a handler does.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Final, Protocol, runtime_checkable

from resctrl_pipeline.errors import PipelineError
from resctrl_pipeline.nri import nri_pb2

__all__ = [
    "EVENTS",
    "LEGACY_VALID_MASK",
    "ConfigureHandler",
    "CreateContainerHandler",
    "Event",
    "EventSpec",
    "PostCreateContainerHandler",
    "PostStartContainerHandler",
    "PostUpdateContainerHandler",
    "RemoveContainerHandler",
    "RemovePodSandboxHandler",
    "RunPodSandboxHandler",
    "StartContainerHandler",
    "StopContainerHandler",
    "StopPodSandboxHandler",
    "SynchronizeHandler",
    "UnhandledEvents",
    "UpdateContainerHandler",
    "event_mask",
    "handled_events",
]

Pod = nri_pb2.PodSandbox
Ctr = nri_pb2.Container


class Event(IntEnum):
    """NRI event numbers; the mask bit of event *e* is ``1 << (e - 1)``."""

    RUN_POD_SANDBOX = 1
    STOP_POD_SANDBOX = 2
    REMOVE_POD_SANDBOX = 3
    CREATE_CONTAINER = 4
    POST_CREATE_CONTAINER = 5
    START_CONTAINER = 6
    POST_START_CONTAINER = 7
    UPDATE_CONTAINER = 8
    POST_UPDATE_CONTAINER = 9
    STOP_CONTAINER = 10
    REMOVE_CONTAINER = 11

    @property
    def bit(self) -> int:
        """This event's bit in the subscription mask."""
        return 1 << (self.value - 1)


LEGACY_VALID_MASK: Final = 0x7FF
"""Every bit NRI v0.2-v0.9 (containerd 1.7, 2.0, 2.1) accepts; a bit beyond it gets
the plugin disconnected there, so the listener never subscribes outside it."""


class UnhandledEvents(PipelineError):
    """A subscription named events the handler object has no method for."""


# --- one protocol per event (stub-style: having the method means subscribing) ---


@runtime_checkable
class ConfigureHandler(Protocol):
    def configure(self, request: nri_pb2.ConfigureRequest) -> None: ...


@runtime_checkable
class SynchronizeHandler(Protocol):
    def synchronize(self, pods: Sequence[Pod], containers: Sequence[Ctr]) -> None: ...


@runtime_checkable
class RunPodSandboxHandler(Protocol):
    def run_pod_sandbox(self, pod: Pod) -> None: ...


@runtime_checkable
class StopPodSandboxHandler(Protocol):
    def stop_pod_sandbox(self, pod: Pod) -> None: ...


@runtime_checkable
class RemovePodSandboxHandler(Protocol):
    def remove_pod_sandbox(self, pod: Pod) -> None: ...


@runtime_checkable
class CreateContainerHandler(Protocol):
    def create_container(self, pod: Pod, container: Ctr) -> None: ...


@runtime_checkable
class PostCreateContainerHandler(Protocol):
    def post_create_container(self, pod: Pod, container: Ctr) -> None: ...


@runtime_checkable
class StartContainerHandler(Protocol):
    def start_container(self, pod: Pod, container: Ctr) -> None: ...


@runtime_checkable
class PostStartContainerHandler(Protocol):
    def post_start_container(self, pod: Pod, container: Ctr) -> None: ...


@runtime_checkable
class UpdateContainerHandler(Protocol):
    def update_container(self, pod: Pod, container: Ctr) -> None: ...


@runtime_checkable
class PostUpdateContainerHandler(Protocol):
    def post_update_container(self, pod: Pod, container: Ctr) -> None: ...


@runtime_checkable
class StopContainerHandler(Protocol):
    def stop_container(self, pod: Pod, container: Ctr) -> None: ...


@runtime_checkable
class RemoveContainerHandler(Protocol):
    def remove_container(self, pod: Pod, container: Ctr) -> None: ...


@dataclass(frozen=True, slots=True)
class EventSpec:
    """How one event reaches a plugin and which handler method takes it.

    ``dedicated`` is the ttrpc method of NRI >= v0.12 (or of every version, for the
    three container calls that were never StateChange); ``via_state_change`` says
    whether older runtimes deliver it through ``StateChange``.
    """

    event: Event
    handler: type
    method: str
    dedicated: str
    via_state_change: bool
    has_container: bool


EVENTS: Final[tuple[EventSpec, ...]] = (
    EventSpec(
        Event.RUN_POD_SANDBOX,
        RunPodSandboxHandler,
        "run_pod_sandbox",
        "RunPodSandbox",
        True,
        False,
    ),
    EventSpec(
        Event.STOP_POD_SANDBOX,
        StopPodSandboxHandler,
        "stop_pod_sandbox",
        "StopPodSandbox",
        True,
        False,
    ),
    EventSpec(
        Event.REMOVE_POD_SANDBOX,
        RemovePodSandboxHandler,
        "remove_pod_sandbox",
        "RemovePodSandbox",
        True,
        False,
    ),
    EventSpec(
        Event.CREATE_CONTAINER,
        CreateContainerHandler,
        "create_container",
        "CreateContainer",
        False,
        True,
    ),
    EventSpec(
        Event.POST_CREATE_CONTAINER,
        PostCreateContainerHandler,
        "post_create_container",
        "PostCreateContainer",
        True,
        True,
    ),
    EventSpec(
        Event.START_CONTAINER,
        StartContainerHandler,
        "start_container",
        "StartContainer",
        True,
        True,
    ),
    EventSpec(
        Event.POST_START_CONTAINER,
        PostStartContainerHandler,
        "post_start_container",
        "PostStartContainer",
        True,
        True,
    ),
    EventSpec(
        Event.UPDATE_CONTAINER,
        UpdateContainerHandler,
        "update_container",
        "UpdateContainer",
        False,
        True,
    ),
    EventSpec(
        Event.POST_UPDATE_CONTAINER,
        PostUpdateContainerHandler,
        "post_update_container",
        "PostUpdateContainer",
        True,
        True,
    ),
    EventSpec(
        Event.STOP_CONTAINER,
        StopContainerHandler,
        "stop_container",
        "StopContainer",
        False,
        True,
    ),
    EventSpec(
        Event.REMOVE_CONTAINER,
        RemoveContainerHandler,
        "remove_container",
        "RemoveContainer",
        True,
        True,
    ),
)
"""Every subscribable event of NRI v0.2-v0.9, in event order."""


def handled_events(handler: object) -> frozenset[Event]:
    """Return the events ``handler`` has a method for."""
    return frozenset(spec.event for spec in EVENTS if isinstance(handler, spec.handler))


def event_mask(handler: object, wanted: Iterable[Event] | None = None) -> int:
    """Compute the subscription mask for ``handler``.

    Args:
        handler: the object whose methods handle events.
        wanted: narrow the subscription to these events; None subscribes to every
            handled event.

    Returns:
        The mask for ``ConfigureResponse.events``, never 0: the runtime reads 0 as
        "every event", the opposite of an empty subscription.

    Raises:
        UnhandledEvents: ``wanted`` names an event the handler has no method for, or
            nothing at all would be subscribed.
    """
    handled = handled_events(handler)
    chosen = handled if wanted is None else frozenset(wanted)
    missing = chosen - handled
    if missing:
        names = ", ".join(sorted(e.name for e in missing))
        raise UnhandledEvents(f"no handler for subscribed events: {names}")
    if not chosen:
        raise UnhandledEvents("nothing to subscribe to: the handler handles no event")
    mask = 0
    for event in chosen:
        mask |= event.bit
    return mask
