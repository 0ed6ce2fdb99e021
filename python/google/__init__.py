# `google` is a namespace shared with other distributions (Debian's
# python3-protobuf installs google/protobuf without an __init__.py, pip
# packages such as google-auth add more). This package comes first on the
# runtime's PYTHONPATH for google.colab; extend_path adds every other
# `google` directory on sys.path so that google.protobuf & co still import.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
