"""The HTTP side: ``registry serve``'s ASGI app. Nothing imports this package but the CLI."""

from registry.server.app import MirrorApp, create_app
from registry.server.auth import TokenPolicy

__all__ = ["MirrorApp", "TokenPolicy", "create_app"]
