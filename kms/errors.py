"""The kms exception tree. Callers catch `KmsError`; the API maps each class to one HTTP status.

KmsError
├── ConfigError        bad settings or index_config/ YAML            (start-up stops)
├── NotFound           missing, or not readable by the caller        404
├── InvalidInput       a request or file the caller must fix         422
│   └── TooLarge       over a size limit                             413
├── Forbidden          the caller's role does not allow the action   403 (never for document reads)
├── Conflict           the thing to create already exists            409
├── IngestError        one file could not be ingested (reason kept)
├── ModelMismatch      the index was built with another embedder
└── StoreBusy          the embedded store is owned by another process
"""

from __future__ import annotations


class KmsError(Exception):
    """Base class of every error kms raises on purpose."""


class ConfigError(KmsError):
    pass


class NotFound(KmsError):
    def __init__(self, message: str = "not found") -> None:
        super().__init__(message)


class InvalidInput(KmsError):
    pass


class TooLarge(InvalidInput):
    pass


class Forbidden(KmsError):
    pass


class Conflict(KmsError):
    pass


class IngestError(KmsError):
    pass


class ModelMismatch(KmsError):
    pass


class StoreBusy(KmsError):
    pass
