"""Fail closed: a mirror hook that raises answers its flow with a registry error.

mitmproxy runs a script's addons as the children of one addon, inside one `safecall`: when a
hook raises, it logs "Addon error", skips the remaining children's hooks for that event and
still forwards the flow to whatever `flow.request` names by then. The router has set the
upstream long before client auth, token handling and policy have had their say, so every
crash would fail *open* (the security review's findings 1, 3 and 8).

`guarded()` wraps every flow and connection hook of the mirror's addons once, when the chain
is built. On an exception it logs the traceback, records the fault in the flow record, and:
- in `requestheaders`/`request`: answers 500 `UNKNOWN` at once, so nothing goes upstream;
- in `responseheaders`: replaces the upstream's answer with the 500 and drains the upstream
  body into nothing, so none of its bytes reach the client;
- in `response`: replaces the answer unless its body has already been streamed;
- in `server_connect`: refuses the upstream connection.
The remaining addons still run, and see a flow that already has its answer, so the log line
and the metrics count it. Lifecycle hooks (`load`, `configure`, `running`, `done`) are left to
mitmproxy, which stops the start-up or rolls back an option when they raise.
"""

import functools
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from mitmproxy import http
from mitmproxy.proxy import server_hooks

from . import errors
from .answers import answer
from .record import outcome

logger = logging.getLogger(__name__)

FLOW_HOOKS = ("requestheaders", "request", "responseheaders", "response", "error")
CONNECTION_HOOKS = (
    "client_connected",
    "client_disconnected",
    "server_connect",
    "server_connected",
    "server_disconnected",
    "next_layer",
)
GUARDED_HOOKS = FLOW_HOOKS + CONNECTION_HOOKS
MESSAGE = "internal error in the mirror"


def fault_response(flow: http.HTTPFlow) -> http.Response:
    return errors.error_response(500, errors.UNKNOWN, MESSAGE, head=flow.request.method == "HEAD")


class Drain:
    """A response's stream callable that drops the upstream's chunks and ends with `body`
    (mitmproxy calls it with b"" at the end)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __call__(self, data: bytes) -> bytes:
        return b"" if data else self.body


def answer_fault(flow: http.HTTPFlow, hook: str) -> None:
    """Answer a flow whose `hook` raised, so that no request and no unchecked answer passes."""
    if hook in ("requestheaders", "request"):
        answer(flow, fault_response(flow), "guard")
    elif hook == "responseheaders":
        resp = fault_response(flow)
        resp.stream = Drain(resp.content or b"")
        flow.response = resp
    elif hook == "response" and flow.response is not None:
        if not flow.response.stream:
            flow.response = fault_response(flow)
        elif not isinstance(flow.response.stream, Drain):
            logger.error("regmirror: the body of that answer had already been streamed")


def record_fault(flow: http.HTTPFlow, where: str) -> None:
    outcome(flow).setdefault("fault", where)


def _fail(name: str, hook: str, args: tuple[Any, ...], exc: BaseException) -> None:
    target = args[0] if args else None
    kind = type(exc).__name__
    logger.error("regmirror: %s.%s raised %s; answered 500", name, hook, kind, exc_info=exc)
    if isinstance(target, http.HTTPFlow):
        record_fault(target, f"{name}.{hook}")
        if hook != "error":
            answer_fault(target, hook)
    elif isinstance(target, server_hooks.ServerConnectionHookData) and hook == "server_connect":
        target.server.error = MESSAGE


def _wrap(name: str, hook: str, func: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def guarded_async(*args: Any) -> None:
            try:
                await func(*args)
            except Exception as e:
                _fail(name, hook, args, e)

        return guarded_async

    @functools.wraps(func)
    def guarded_sync(*args: Any) -> None:
        try:
            func(*args)
        except Exception as e:
            _fail(name, hook, args, e)

    return guarded_sync


T = TypeVar("T")


def guarded(addons: Iterable[T]) -> list[T]:
    """The addons, each with its flow and connection hooks wrapped (in place)."""
    out = list(addons)
    for addon in out:
        for hook in GUARDED_HOOKS:
            func = getattr(addon, hook, None)
            if callable(func) and not getattr(func, "regmirror_guarded", False):
                wrapper = _wrap(type(addon).__name__, hook, func)
                wrapper.regmirror_guarded = True  # type: ignore[attr-defined]
                setattr(addon, hook, wrapper)
    return out
