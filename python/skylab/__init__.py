"""Skylab's helpers for code running in a runtime.

Importable in every runtime (the sandbox puts this directory on PYTHONPATH):

    import skylab.runtime
    skylab.runtime.deadline()          # when this runtime will be stopped
    skylab.runtime.on_expiry(save)     # run `save` before it is

    from skylab import files           # also: from google.colab import files
    files.download("model.pt")         # the browser saves the file
    files.upload()                     # the browser sends files: {name: bytes}
"""
