"""Build step of node_image/Dockerfile (models-context stage): ONNX models given as files.

Copies ``$BUILD_CONTEXT/$ONNX_DIR`` (a folder written by ``facegrid models
export-onnx``) to ``$ONNX_OUT`` (default /opt/facegrid/onnx), readable by all, and
checks every file against the sha256 its manifest.json records; fails (nothing usable left)
when the folder or a checksum is wrong.  A file rather than a RUN heredoc:
buildah/podman before 1.33 do not understand heredocs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys


def main() -> None:
    context = os.environ.get("BUILD_CONTEXT", "/context")
    onnx_dir = os.environ.get("ONNX_DIR", "")
    dest = os.environ.get("ONNX_OUT", "/opt/facegrid/onnx")
    src = os.path.join(context, onnx_dir)
    if not onnx_dir or not os.path.isfile(os.path.join(src, "manifest.json")):
        sys.exit("MODELS=context needs --build-arg ONNX_DIR=<folder with manifest.json>")
    with open(os.path.join(src, "manifest.json")) as f:
        manifest = json.load(f)
    shutil.copytree(src, dest)
    # Readable by the image's non-root user whatever modes the files had (onnx
    # writes external data 0600).
    os.chmod(dest, 0o755)
    for name in os.listdir(dest):
        os.chmod(os.path.join(dest, name), 0o644)
    for entry in manifest["files"].values():
        for key, digest in (("file", "sha256"), ("data", "data_sha256")):
            if entry.get(key):
                with open(os.path.join(dest, entry[key]), "rb") as f:
                    if hashlib.sha256(f.read()).hexdigest() != entry[digest]:
                        shutil.rmtree(dest)
                        sys.exit(f"{entry[key]} does not match its sha256 in manifest.json")
    sys.stdout.write(f"ONNX models of {manifest['model_id']} from {src}\n")


if __name__ == "__main__":
    main()
