"""The Flask API under /api/integrations/crm/: an app factory, one blueprint per area."""

from __future__ import annotations

from typing import Any

from flask import Flask

from api.context import EXTENSION, Integration, make_run_launcher
from api.errors import register_error_handlers
from api.validation import spec
from resources.settings import Settings, get_settings
from resources.telemetry import instrument_flask, setup_telemetry

MAX_BODY_BYTES = 64 * 1024


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the API; test_config may carry `settings` and a `run_launcher`."""
    from api import customers, health

    config = dict(test_config or {})
    settings: Settings = config.pop("settings", None) or get_settings()
    # gunicorn loads the app in each worker after the fork, so this runs once per worker process.
    setup_telemetry("api")
    app = Flask(__name__)
    # Bodies here are a few bytes of JSON; anything larger is refused (413) before it is read.
    app.config.update(MAX_CONTENT_LENGTH=MAX_BODY_BYTES, **config)
    app.json.sort_keys = False
    app.extensions[EXTENSION] = Integration(
        settings=settings, run_launcher=make_run_launcher(settings, config.get("run_launcher"))
    )
    app.register_blueprint(customers.bp)
    app.register_blueprint(health.bp)
    register_error_handlers(app)
    spec.register(app)
    instrument_flask(app)
    return app
