"""gunicorn settings for the Procfile's `web:` line (read from the working directory).

gunicorn itself binds 0.0.0.0:$PORT when PORT is set (PaaS) and reads WEB_CONCURRENCY for the
number of worker processes; both are left to it. Each worker process serves its connections as
gevent greenlets, not threads: a client that trickles its request costs a greenlet, not one of
a few request threads, so slow clients cannot freeze ingest (README, "Security"); the body's
deadline is BODY_READ_TIMEOUT_SECONDS (receiver/web/slowbody.py). Each request holds a database
connection only while it runs.
"""

# gevent's monkey-patching comes first, in the master, before anything imports ssl: the settings
# check below imports the app's modules, and urllib3 and botocore build ssl contexts from what
# they imported; patched only later (in each worker), those contexts recurse forever on the
# first https call (gevent issue 1016: seen with boto3 in ARTIFACT_STORE=s3://...).
from gevent import monkey

monkey.patch_all()

import os  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

# Each worker process builds its own app (and database pool) after the fork: no connection is
# ever shared between processes.
preload_app = False
worker_class = "receiver.web.gunicorn_worker.RelayGeventWorker"  # gevent, see that module
timeout = 30
# SIGTERM: stop accepting, finish requests in flight for up to 25 s, exit; a PaaS sends SIGKILL
# 30 s after SIGTERM (Heroku, Render), so the master is gone before that.
graceful_timeout = 25
# Seconds an idle keep-alive connection is kept open (gevent: a waiting greenlet, no thread).
# Longer than any router in front keeps an idle connection to us (Heroku's Router 2.0: 90 s;
# AWS ALB: 60 s), so that the router, never gunicorn, closes it: were gunicorn to close first,
# a request the router sends at that moment would meet a closed socket (Heroku: H13/502).
keepalive = 95
# Forwarded headers are read in one place only: ProxyFix in the app, for TRUSTED_PROXY_HOPS hops.
# gunicorn trusts no peer: from a trusted one it would take X-Forwarded-Proto, and SCRIPT_NAME and
# PATH_INFO headers (which rewrite every URL the app builds: an open redirect).
forwarded_allow_ips = ""
forwarder_headers = ""
secure_scheme_headers: dict[str, str] = {}
if not os.environ.get("PORT"):
    bind = ["0.0.0.0:8000"]

# Configuration errors stop the master here, with the one message of load_settings (a bad
# setting would otherwise make every worker fail to boot, each with a traceback).
try:
    from receiver.settings import ConfigError, load_settings

    _settings = load_settings()
except ConfigError as _error:
    raise SystemExit(f"error: {_error}") from None

# Connections one worker process holds at once (gevent: each a greenlet): WEB_CONNECTIONS.
worker_connections = _settings.web_connections
accesslog = "-" if _settings.access_log else None  # ACCESS_LOG=1

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
