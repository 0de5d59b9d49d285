"""pixql's version, in a module of its own: submodules that report it (the CLI, the server,
the client) import it from here, never from the ``pixql`` package, which imports them."""

__version__ = "0.1.0"
