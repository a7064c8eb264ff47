"""Subscription mask and dispatch of the Plugin service (no sockets)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from resctrl_pipeline.messages import Message
from resctrl_pipeline.nri import nri_pb2
from resctrl_pipeline.nri.events import EVENTS, Event, EventSpec, UnhandledEvents, event_mask
from resctrl_pipeline.nri.listener import NriListener
from resctrl_pipeline.nri.service import PLUGIN_SERVICE, PluginService
from resctrl_pipeline.nri.ttrpc import Code, RpcError

from .support import Recorder

POD = nri_pb2.PodSandbox(id="sb1", uid="u1", name="p", namespace="ns")
CTR = nri_pb2.Container(id="c1", pod_sandbox_id="sb1", pid=42)


def _call(service: PluginService, method: str, payload: bytes = b"") -> bytes:
    return service.call(PLUGIN_SERVICE, method, payload)


def test_listener_subscribes_to_exactly_the_four_lifecycle_events() -> None:
    assert event_mask(NriListener()) == 0x425  # RUN | REMOVE_POD | START | REMOVE_CONTAINER


def test_mask_is_computed_from_the_methods_present() -> None:
    assert event_mask(Recorder()) == 0x7FF

    class OnlyStart:
        def drain(self) -> list[Message]:
            return []

        def start_container(self, pod: nri_pb2.PodSandbox, ctr: nri_pb2.Container) -> None:
            pass

    assert event_mask(OnlyStart()) == Event.START_CONTAINER.bit == 0x20
    with pytest.raises(UnhandledEvents, match="RUN_POD_SANDBOX"):
        event_mask(OnlyStart(), [Event.RUN_POD_SANDBOX])
    with pytest.raises(UnhandledEvents):
        event_mask(object())  # mask 0 would mean "everything" to the runtime


def test_configure_answers_the_mask() -> None:
    service = PluginService(NriListener(), 0x425)
    reply = _call(service, "Configure", nri_pb2.ConfigureRequest().SerializeToString())
    assert nri_pb2.ConfigureResponse.FromString(reply).events == 0x425
    assert reply == b"\x10\xa5\x08"  # field 2, not 1
    assert service.configured


def test_split_synchronize_is_echoed_and_delivered_once() -> None:
    handler = Recorder()
    service = PluginService(handler, 0x7FF)
    first = nri_pb2.SynchronizeRequest(pods=[POD], containers=[CTR], more=True)
    reply = _call(service, "Synchronize", first.SerializeToString())
    assert reply == b"\x10\x01"  # SynchronizeResponse{more: true}, no updates
    assert handler.synced == [] and not service.synchronized
    last = nri_pb2.SynchronizeRequest(pods=[POD, POD])
    assert _call(service, "Synchronize", last.SerializeToString()) == b""
    assert handler.synced == [(3, 1)]
    assert service.synchronized


@pytest.mark.parametrize("spec", EVENTS, ids=lambda s: s.event.name)
def test_every_event_reaches_its_handler_by_state_change(spec: EventSpec) -> None:
    handler = Recorder()
    service = PluginService(handler, 0x7FF)
    change = nri_pb2.StateChangeEvent(event=spec.event.name, pod=POD, container=CTR)
    assert _call(service, "StateChange", change.SerializeToString()) == b""
    assert handler.calls == [(spec.method, "u1", "c1" if spec.has_container else "")]


@pytest.mark.parametrize("spec", EVENTS, ids=lambda s: s.event.name)
def test_every_event_reaches_its_handler_by_its_dedicated_method(spec: EventSpec) -> None:
    handler = Recorder()
    service = PluginService(handler, 0x7FF)
    request = nri_pb2.ContainerEventRequest(pod=POD, container=CTR)
    assert _call(service, spec.dedicated, request.SerializeToString()) == b""
    assert handler.calls == [(spec.method, "u1", "c1" if spec.has_container else "")]


def test_unhandled_dedicated_method_is_unimplemented_for_state_change_fallback() -> None:
    service = PluginService(NriListener(), 0x425)
    with pytest.raises(RpcError) as err:
        _call(service, "PostStartContainer", b"")
    assert (err.value.code, err.value.message) == (Code.UNIMPLEMENTED, "method PostStartContainer")
    # The three always-dedicated container calls are answered empty even when unhandled.
    for method in ("CreateContainer", "UpdateContainer", "StopContainer", "Shutdown"):
        assert _call(service, method, b"") == b""


def test_unknown_method_and_service_are_unimplemented_like_go() -> None:
    service = PluginService(NriListener(), 0x425)
    with pytest.raises(RpcError) as err:
        _call(service, "ValidateContainerAdjustment", b"")
    assert (err.value.code, err.value.message) == (12, "method ValidateContainerAdjustment")
    with pytest.raises(RpcError) as err:
        service.call("nri.pkg.api.v1alpha1.Runtime", "RegisterPlugin", b"")
    assert (err.value.code, err.value.message) == (12, "service nri.pkg.api.v1alpha1.Runtime")


def test_events_outside_the_mask_are_ignored_with_success() -> None:
    handler = Recorder()
    service = PluginService(handler, Event.START_CONTAINER.bit)
    change = nri_pb2.StateChangeEvent(event="RUN_POD_SANDBOX", pod=POD)
    assert _call(service, "StateChange", change.SerializeToString()) == b""
    unknown = nri_pb2.StateChangeEvent(pod=POD)
    unknown_bytes = unknown.SerializeToString() + b"\x08\x63"  # event 99
    assert _call(service, "StateChange", unknown_bytes) == b""
    assert handler.calls == []
    assert service.counters["event_ignored.RUN_POD_SANDBOX"] == 1
    assert service.counters["event_ignored.other"] == 1  # 99 names no event


def test_undecodable_payload_is_invalid_argument() -> None:
    service = PluginService(NriListener(), 0x425)
    with pytest.raises(RpcError) as err:
        _call(service, "StateChange", b"\x12\xff\xff\xff\xff\x0f")
    assert err.value.code == Code.INVALID_ARGUMENT


def test_a_failing_handler_still_gets_an_empty_success() -> None:
    class Broken:
        def drain(self) -> list[Message]:
            return []

        def run_pod_sandbox(self, pod: nri_pb2.PodSandbox) -> None:
            raise RuntimeError("bug")

        def synchronize(
            self, pods: Sequence[nri_pb2.PodSandbox], ctrs: Sequence[nri_pb2.Container]
        ) -> None:
            raise RuntimeError("bug")

    service = PluginService(Broken(), 0x1)
    change = nri_pb2.StateChangeEvent(event="RUN_POD_SANDBOX", pod=POD)
    assert _call(service, "StateChange", change.SerializeToString()) == b""
    assert _call(service, "Synchronize", b"") == b""
    assert service.counters["handler_errors"] == 2
    assert service.synchronized
