"""The mirror's configuration file, read at start and again when it changes: checked every
CONFIG_POLL seconds by its modification time, or at once by the `regmirror.reload` command."""

import asyncio
import logging
import os
from collections.abc import Callable

from mitmproxy import exceptions

from .config import Config, ConfigError, load_config

logger = logging.getLogger(__name__)

CONFIG_POLL = 2.0  # seconds between checks of the config file for changes


class ConfigFile:
    def __init__(self) -> None:
        self.mtime = 0.0

    def load(self, path: str) -> Config:
        """The configuration in `path` (none: the defaults). Raises OptionsError naming the
        option and the key."""
        if not path:
            return Config()
        try:
            self.mtime = os.stat(path).st_mtime
            return load_config(path)
        except (OSError, ConfigError) as e:
            raise exceptions.OptionsError(f"regmirror_config: {e}") from e

    def changed(self, path: str) -> bool:
        try:
            return bool(path) and os.stat(path).st_mtime != self.mtime
        except OSError:
            return False

    async def watch(self, path: Callable[[], str], reload: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(CONFIG_POLL)
            if self.changed(path()):
                reload()
