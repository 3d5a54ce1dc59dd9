"""gunicorn settings for the Procfile's `web:` line (read from the working directory).

gunicorn itself binds 0.0.0.0:$PORT when PORT is set (PaaS) and reads WEB_CONCURRENCY for the
number of worker processes; both are left to it. Each worker process serves its connections as
gevent greenlets, not threads: a client that trickles its request costs a greenlet, not one of
a few request threads, so slow clients cannot freeze ingest (README, "Security"); the body's
deadline is BODY_READ_TIMEOUT_SECONDS (receiver/web/slowbody.py). Each request holds a database
connection only while it runs.
"""

import os
import shutil
import tempfile

# Each worker process builds its own app (and database pool) after the fork: no connection is
# ever shared between processes.
preload_app = False
worker_class = "gevent"
# Connections one worker process holds at once (gevent: each a greenlet).
worker_connections = int(os.environ.get("WEB_CONNECTIONS", "1000"))
timeout = 30
graceful_timeout = 25
keepalive = 5
accesslog = "-" if os.environ.get("ACCESS_LOG", "") == "1" else None
# Forwarded headers are read in one place only: ProxyFix in the app, for TRUSTED_PROXY_HOPS hops.
# gunicorn trusts no peer: from a trusted one it would take X-Forwarded-Proto, and SCRIPT_NAME and
# PATH_INFO headers (which rewrite every URL the app builds: an open redirect).
forwarded_allow_ips = ""
forwarder_headers = ""
secure_scheme_headers: dict[str, str] = {}
if not os.environ.get("PORT"):
    bind = ["0.0.0.0:8000"]

# Prometheus multiprocess mode (receiver/metrics.py): the web workers add up their counters
# through files in one directory, which must be named before a worker imports prometheus_client,
# hence here in the master. Unless PROMETHEUS_MULTIPROC_DIR names one already (to share it with
# a relay worker on this machine), the master makes a fresh one and removes it when it exits.
_own_metrics_dir = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _own_metrics_dir = tempfile.mkdtemp(prefix="relay-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _own_metrics_dir


def child_exit(server, worker):  # a gunicorn hook: a worker process has exited
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # a gunicorn hook: the master is shutting down
    if _own_metrics_dir:
        shutil.rmtree(_own_metrics_dir, ignore_errors=True)
