"""The Ray Serve application: ``serve run serve.app:app`` or ``serve deploy serve/config.yaml``."""
