"""mitmproxy's hook dispatch, with its semantics and a fraction of its cost per event.

`AddonManager.trigger_event` runs every event through every addon of its chain (about 40 in
mitmdump, regmirror's 19 as one script's children): per chain item a `safecall()` context
manager, an `invoke_addon` coroutine and two generators (`_iter_hooks`, `traverse`), and
`event.args()` (dataclasses.fields) again for every hook called. For a manifest HEAD that is
about a quarter of the mirror's CPU, most of it for addons that have no hook for the event
(py-spy: contextlib 12 %, `_iter_hooks` 12 %, `traverse` 4 %, BENCHMARKS.md).

`trigger_event` here does the same in the same order: each chain item and its children
(depth first, as `traverse`), every hook called with the event's arguments, awaited when it
returns an awaitable; a hook that raises ends its chain item's part, logged by mitmproxy's
own `safecall`, and the next item runs; `AddonHalt` ends the event; `OptionsError` is
raised to the caller. It takes the arguments once per event, and sets up an exception
handler only per chain item.
"""

import inspect
import types
from collections.abc import Callable
from typing import Any

from mitmproxy import exceptions, hooks
from mitmproxy.addonmanager import AddonManager, safecall, traverse


def _hook(addon: Any, name: str) -> Callable[..., Any] | None:
    func = getattr(addon, name, None)
    if not func or isinstance(func, types.ModuleType):  # a module named like the hook
        return None
    if not callable(func):
        raise exceptions.AddonManagerError(f"Addon handler {name} ({addon}) not callable")
    return func


async def trigger_event(self: AddonManager, event: hooks.Hook) -> None:
    name, args = event.name, event.args()
    for item in self.chain:
        try:
            for addon in traverse([item]) if hasattr(item, "addons") else (item,):
                func = _hook(addon, name)
                if func is None:
                    continue
                res = func(*args)
                if res is not None and inspect.isawaitable(res):
                    await res
        except exceptions.AddonHalt:
            return
        except exceptions.OptionsError:
            raise
        except Exception:
            with safecall():  # logs it as mitmproxy does ("Addon error: ...")
                raise
