"""Task-instance hostname for Airflow: a worker's own name when several share one machine."""

from __future__ import annotations

import os
import socket


def get_worker_hostname() -> str:
    """$WALNUT_WORKER_NAME (set per Celery worker by stack.py), else the machine's FQDN.

    Airflow records this on every task instance (`[core] hostname_callable`); two workers on one
    machine would otherwise report the same host and could not be told apart.
    """
    return os.environ.get("WALNUT_WORKER_NAME") or socket.getfqdn()
