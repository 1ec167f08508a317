"""The cluster signing key: an Ed25519 key in a Secret only the operator reads.

Created if missing (two operators racing: the loser reads the winner's key);
its public half is published in a ConfigMap the server and worker mount as
``signing.pub``.
"""

from __future__ import annotations

import base64
import logging

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from facegrid import tokens
from facegrid.errors import FacegridError

from . import builders
from .kube import Kube, KubeError, configmaps_path, secrets_path
from .settings import OperatorSettings

log = logging.getLogger(__name__)


class SigningKeyError(FacegridError):
    pass


def _read_key(secret: dict, name: str) -> Ed25519PrivateKey:
    raw = (secret.get("data") or {}).get(tokens.PRIVATE_KEY_FILE)
    if not raw:
        raise SigningKeyError(f"Secret {name} has no {tokens.PRIVATE_KEY_FILE!r} key")
    try:
        return tokens.load_private_key(base64.b64decode(raw))
    except ValueError as e:
        raise SigningKeyError(f"Secret {name} does not hold an Ed25519 PEM key: {e}") from e


def ensure_signing_key(kube: Kube, settings: OperatorSettings) -> Ed25519PrivateKey:
    """Load the signing key, creating it if there is none; publish the public key."""
    ns, name = settings.namespace, settings.signing_key_secret
    secret = kube.get_or_none(secrets_path(ns, name))
    if secret is None:
        key = tokens.generate_private_key()
        try:
            kube.create(secrets_path(ns), builders.signing_key_secret(
                settings, tokens.private_pem(key)))
            log.info("created signing key Secret %s/%s", ns, name)
        except KubeError as e:
            if not e.conflict:
                raise
            secret = kube.get(secrets_path(ns, name))
            key = _read_key(secret, name)
    else:
        key = _read_key(secret, name)
    publish_public_key(kube, settings, key)
    return key


def publish_public_key(kube: Kube, settings: OperatorSettings, key: Ed25519PrivateKey) -> None:
    cm = builders.public_key_configmap(settings, tokens.public_pem(key))
    current = kube.get_or_none(configmaps_path(settings.namespace, settings.public_key_configmap))
    if current is not None and current.get("data") == cm["data"]:
        return
    kube.apply(configmaps_path(settings.namespace, settings.public_key_configmap), cm)
    log.info("published the public key in ConfigMap %s/%s", settings.namespace,
             settings.public_key_configmap)
