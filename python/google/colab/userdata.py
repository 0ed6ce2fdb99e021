"""``google.colab.userdata`` in Skylab: the same functions and errors as
``skylab.userdata``."""
from skylab.userdata import NotebookAccessError, SecretNotFoundError, TimeoutException, get  # noqa: F401

__all__ = ["get", "SecretNotFoundError", "NotebookAccessError", "TimeoutException"]
