"""The bearer token of the mutating endpoints.

``CNCWEAR_API_TOKEN`` when set; otherwise a token generated at first start and kept in a file under
``CNCWEAR_HOME`` that only its owner can read. The log says where the file is, never the token.

Replicas serving a shared registry (an MLflow server or database) run on machines that share no
disk, so each would generate a token of its own: there the token must be given
(``CNCWEAR_API_TOKEN``, or ``CNCWEAR_TOKEN_FILE`` naming a mounted secret).
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from pydantic import SecretStr

from cncwear.core.errors import CncwearError
from cncwear_api.core.settings import ApiSettings

logger = logging.getLogger(__name__)

OWNER_ONLY = 0o600


class TokenNotConfiguredError(CncwearError):
    """A replica of a shared registry was started without the token all replicas must share."""


def resolve_api_token(settings: ApiSettings) -> SecretStr:
    if settings.api_token is not None and settings.api_token.get_secret_value():
        logger.info("API token taken from CNCWEAR_API_TOKEN")
        return settings.api_token
    if settings.token_file is None and settings.registry_is_shared():
        raise TokenNotConfiguredError(
            "the registry is shared (MLFLOW_TRACKING_URI is a server or a database), so every API "
            "replica must be given the same token: set CNCWEAR_API_TOKEN (or CNCWEAR_TOKEN_FILE "
            "to a mounted secret)"
        )
    return SecretStr(_token_from_file(settings.token_path()))


def _token_from_file(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # O_EXCL: of several workers starting together, exactly one creates the token
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            path.chmod(OWNER_ONLY)
            logger.warning("%s was readable by others; made it readable by its owner only", path)
        token = path.read_text().strip()
        if not token:
            raise RuntimeError(f"the API token file {path} is empty") from None
        logger.info("API token read from %s", path)
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    logger.info("generated an API token in %s (readable by its owner only)", path)
    return token


def token_matches(expected: SecretStr, given: str | None) -> bool:
    return given is not None and secrets.compare_digest(
        given.encode(), expected.get_secret_value().encode()
    )
