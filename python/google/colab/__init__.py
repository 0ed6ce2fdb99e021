"""Colab's module names in Skylab, so that notebooks written for Colab run
unchanged: ``from google.colab import files`` is ``skylab.files``."""
