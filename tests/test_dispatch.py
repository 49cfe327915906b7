"""The patched hook dispatch does what mitmproxy's own does, event by event: the same hooks
in the same order with the same arguments, the same log for a hook that raises, the same
end at AddonHalt and the same OptionsError for its caller."""

import logging

import pytest
from mitmproxy import exceptions
from mitmproxy.addonmanager import AddonManager
from mitmproxy.proxy.layers.http import HttpRequestHeadersHook
from mitmproxy.test import taddons, tflow
from regmirror.transport import dispatch

ORIGINAL = AddonManager.trigger_event


class Recorder:
    def __init__(self, name: str, calls: list, fail: type[BaseException] | None = None,
                 children: list | None = None) -> None:  # fmt: skip
        self.name, self.calls, self.fail = name, calls, fail
        if children is not None:
            self.addons = children

    def requestheaders(self, flow) -> None:
        self.calls.append((self.name, flow.id))
        if self.fail:
            raise self.fail("boom")


class AsyncRecorder(Recorder):
    async def requestheaders(self, flow) -> None:  # type: ignore[override]
        Recorder.requestheaders(self, flow)


class NoHook:
    requestheaders = None
    import logging as log  # a module named like a hook is skipped


def chain(calls: list, fail_at: str = "", fail: type[BaseException] = ValueError) -> list:
    def r(name, cls=Recorder, children=None):
        return cls(name, calls, fail if name == fail_at else None, children)

    return [
        r("a"),
        NoHook(),
        r("b", children=[r("b1", AsyncRecorder), r("b2", children=[r("b21")]), r("b3")]),
        r("c", AsyncRecorder),
        r("d"),
    ]


async def run(trigger, fail_at: str = "", fail: type[BaseException] = ValueError):
    calls: list = []
    f = tflow.tflow()
    with taddons.context() as tctx:
        manager = tctx.master.addons
        for addon in chain(calls, fail_at, fail):
            manager.chain.append(addon)
        try:
            await trigger(manager, HttpRequestHeadersHook(f))
            raised = None
        except Exception as e:
            raised = type(e)
    return [name for name, flow_id in calls if flow_id == f.id], raised


@pytest.mark.parametrize(
    "fail_at,fail",
    [
        ("", ValueError),
        ("a", ValueError),
        ("b1", ValueError),  # the rest of b's children are skipped, c and d run
        ("b21", RuntimeError),
        ("d", ValueError),
        ("b2", exceptions.AddonHalt),  # the event ends there
        ("c", exceptions.OptionsError),  # raised to the caller
    ],
)
async def test_the_same_hooks_run_in_the_same_order_as_with_mitmproxys(fail_at, fail, caplog):
    with caplog.at_level(logging.ERROR):
        theirs = await run(ORIGINAL, fail_at, fail)
        their_log = [r.getMessage() for r in caplog.records]
        caplog.clear()
        ours = await run(dispatch.trigger_event, fail_at, fail)
        our_log = [r.getMessage() for r in caplog.records]
    assert ours == theirs
    assert our_log == their_log
    if fail is ValueError and fail_at:
        assert our_log == ["Addon error: boom"]
    if not fail_at:
        assert ours == (["a", "b", "b1", "b2", "b21", "b3", "c", "d"], None)


async def test_a_hook_attribute_that_cannot_be_called_is_an_addon_error(caplog):
    class Broken:
        requestheaders = 3

    logs = []
    for trigger in (ORIGINAL, dispatch.trigger_event):
        caplog.clear()
        with taddons.context() as tctx, caplog.at_level(logging.ERROR):
            tctx.master.addons.chain.append(Broken())
            await trigger(tctx.master.addons, HttpRequestHeadersHook(tflow.tflow()))
        logs.append([r.getMessage().split(" (")[0] for r in caplog.records])
    assert logs[0] == logs[1] == ["Addon error: Addon handler requestheaders"]
