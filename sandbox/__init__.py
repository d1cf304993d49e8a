"""A runnable fake of the Enterprise CRM Portal that reproduces its observed wire behaviour."""

from sandbox.app import SandboxConfig, create_app
from sandbox.server import SandboxServer

__all__ = ["SandboxConfig", "SandboxServer", "create_app"]
