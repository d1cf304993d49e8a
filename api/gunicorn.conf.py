"""gunicorn settings for the API; each can be overridden with GUNICORN_CMD_ARGS or the env vars named."""

import os

bind = f"{os.environ.get('API_HOST', '127.0.0.1')}:{os.environ.get('API_PORT', '8000')}"
workers = int(os.environ.get("API_WORKERS", "2"))
threads = int(os.environ.get("API_THREADS", "4"))
# A forced sync waits for its Dagster run; give it room beyond DAGSTER_RUN_TIMEOUT (default 120 s).
timeout = int(os.environ.get("API_WORKER_TIMEOUT", "180"))
graceful_timeout = 10
accesslog = "-"
errorlog = "-"
wsgi_app = "api.wsgi:app"
# gunicorn 27's control socket would live in $HOME; nothing here uses it.
control_socket_disable = True


def worker_exit(server, worker):  # type: ignore[no-untyped-def]
    """Export buffered spans before a worker goes away."""
    from resources.telemetry import shutdown_telemetry

    shutdown_telemetry()
