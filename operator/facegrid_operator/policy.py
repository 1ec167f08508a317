"""What the operator's configuration allows a CameraNode to ask for (pure).

The CRD lets anyone who may create a CameraNode name an image and a camera
source; the operator runs them on an edge host.  So it only runs what its
settings allow: an image from the allow-list, a file source under the
configured host folder.  A refused spec becomes ``Valid=False`` with the reason.
"""

from __future__ import annotations

import posixpath

from .settings import OperatorSettings
from .spec import CameraSpec, InvalidSpec, SourceKind


def repository(image: str) -> str:
    """``registry/path/name`` of an image reference (tag and digest removed)."""
    ref = image.split("@", 1)[0]
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    return ref[:colon] if colon > slash else ref


def image_allowed(image: str, settings: OperatorSettings) -> bool:
    repo = repository(image)
    allowed = settings.allowed_images or [repository(settings.node_image)]
    return any(repo.startswith(a) if a.endswith("/") else repo == repository(a)
               for a in allowed)


def check(cam: CameraSpec, settings: OperatorSettings) -> None:
    """Raise InvalidSpec (ImageNotAllowed, SourceNotAllowed) for what the settings refuse."""
    if cam.image and not image_allowed(cam.image, settings):
        allowed = ", ".join(settings.allowed_images or [repository(settings.node_image)])
        raise InvalidSpec("ImageNotAllowed", f"spec.image {cam.image!r} is not allowed: the "
                          f"operator runs only {allowed} (FACEGRID_ALLOWED_IMAGES)")
    if cam.kind is SourceKind.FILE:
        prefix = settings.file_source_prefix
        if not prefix:
            raise InvalidSpec("SourceNotAllowed", "file camera sources are turned off "
                              "(FACEGRID_FILE_SOURCE_PREFIX is empty)")
        prefix = prefix.rstrip("/") + "/"
        path = posixpath.normpath(cam.source or "")
        if not (path + "/").startswith(prefix):
            raise InvalidSpec("SourceNotAllowed", f"camera.source {cam.source!r} is not under "
                              f"{prefix} (FACEGRID_FILE_SOURCE_PREFIX)")
