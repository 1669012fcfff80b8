"""How runs start: ``instance`` (set-up and migration), ``executors`` (where steps run),
``levels`` (one run per depth level, bottom-up) and ``event_log`` (the embedded instance's
batched SQLite event log). Import the submodules; this package re-exports nothing, so the
asset definitions can use the event log without loading the launch machinery.
"""
