"""The Flask app of py.gunicorn: one view that calls an upstream with ``requests``, as a
typical view calls another service (``UPSTREAM`` in the environment names it)."""

from __future__ import annotations

import os

import requests
from flask import Flask

__all__ = ["app"]

app = Flask(__name__)
UPSTREAM = os.environ["UPSTREAM"]


@app.route("/")
def index() -> str:
    reply = requests.get(UPSTREAM, timeout=30)
    return f"upstream: {reply.text}"
