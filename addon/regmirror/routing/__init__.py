"""Where a request goes: registries, the config file, names, routes, policy."""
