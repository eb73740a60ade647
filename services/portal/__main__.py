"""`python -m services.portal`: serve the portal (port PORTAL_PORT, default 8000); `rekisteri up` runs this."""
from __future__ import annotations

import uvicorn

from services.portal.app import build_app
from services.portal.settings import PortalSettings
from shared.logging import configure_logging


def main() -> None:
    settings = PortalSettings()
    configure_logging("portal", settings.log_level)
    config = uvicorn.Config(build_app(settings), host=settings.http_host, port=settings.portal_port, log_config=None,
                            access_log=False, timeout_graceful_shutdown=15, lifespan="on")
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
