"""Skylab's helpers for code running in a runtime.

Importable in every runtime (the sandbox puts this directory on PYTHONPATH):

    import skylab.runtime
    skylab.runtime.deadline()          # when this runtime will be stopped
    skylab.runtime.on_expiry(save)     # run `save` before it is
"""
