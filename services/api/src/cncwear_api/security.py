"""The bearer token of the mutating endpoints.

``CNCWEAR_API_TOKEN`` when set; otherwise a token generated at first start and kept in a file under
``CNCWEAR_HOME`` that only its owner can read. The log says where the file is, never the token.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from pydantic import SecretStr

from cncwear_api.settings import ApiSettings

logger = logging.getLogger(__name__)

OWNER_ONLY = 0o600


def resolve_api_token(settings: ApiSettings) -> SecretStr:
    if settings.api_token is not None and settings.api_token.get_secret_value():
        logger.info("API token taken from CNCWEAR_API_TOKEN")
        return settings.api_token
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
