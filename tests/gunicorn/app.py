"""The Flask app the gunicorn worker tests serve: views that block the stock way.

``UPSTREAM`` (environment) is the URL ``/upstream`` fetches with ``requests``.
"""

from __future__ import annotations

import os
import threading
import time

import requests
from flask import Flask

__all__ = ["app"]

app = Flask(__name__)
_rendezvous: dict[int, threading.Barrier] = {}
_rendezvous_lock = threading.Lock()
_local = threading.local()


@app.route("/echo/<text>")
def echo(text: str) -> str:
    # Kept per virtual thread across a park: another request's value never shows here.
    _local.text = text
    time.sleep(0.001)
    return f"{_local.text} {os.getpid()}"


@app.route("/pid")
def pid() -> str:
    return str(os.getpid())


@app.route("/sleep/<float:seconds>")
def sleep(seconds: float) -> str:
    time.sleep(seconds)
    return f"slept {seconds} {os.getpid()}"


@app.route("/rendezvous/<int:parties>")
def rendezvous(parties: int) -> str:
    """Returns only once ``parties`` requests are inside this view at the same time."""
    with _rendezvous_lock:
        barrier = _rendezvous.setdefault(parties, threading.Barrier(parties))
    barrier.wait(timeout=120)
    return "met"


@app.route("/upstream")
def upstream() -> str:
    reply = requests.get(os.environ["UPSTREAM"], timeout=120)
    return f"upstream said {reply.text}"


@app.route("/boom")
def boom() -> str:
    raise RuntimeError("a view that fails")
