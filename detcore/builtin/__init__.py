"""The kernel's built-in plugins.

Each module here is a plugin like any other: it implements component hooks with ``@hookimpl`` and
is loaded by :meth:`detcore.plugins.DetcorePluginManager.load_plugin`, exactly as an entry point is.
"""
