"""The Ray Serve application and its lifecycle.

- ``serve.app``: the deployment (FastAPI ingress): ``serve run serve.app:build_app`` with the
  config ``insight serve config`` writes;
- ``serve.settings``: its one typed settings model;
- ``serve.deploy``: deploy, wait, tear down, write a Serve config;
- ``serve.daemon``: the detached server behind ``insight serve up``;
- ``serve.admin``: the admin token and admin calls; ``serve.split``: the split's state;
- ``serve.inputs``, ``serve.schemas``, ``serve.models``: the request contract and scoring.
"""
