"""gunicorn settings for the Procfile's `web:` line (read from the working directory).

gunicorn itself binds 0.0.0.0:$PORT when PORT is set (PaaS) and reads WEB_CONCURRENCY for the
number of worker processes; both are left to it. Threads serve the callbacks of one process
concurrently; each request holds a database connection only while it runs.
"""

import os

# Each worker process builds its own app (and database pool) after the fork: no connection is
# ever shared between processes.
preload_app = False
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 30
graceful_timeout = 25
keepalive = 5
accesslog = "-" if os.environ.get("ACCESS_LOG", "") == "1" else None
forwarded_allow_ips = "*"  # the PaaS router; ProxyFix in the app trusts TRUSTED_PROXY_HOPS of it
if not os.environ.get("PORT"):
    bind = ["0.0.0.0:8000"]
