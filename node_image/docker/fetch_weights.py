"""Build step of node_image/Dockerfile (models-export stage): the torch weights.

Writes ``$WEIGHTS_OUT/$MODEL_ID.pt`` (default /opt/facegrid/weights) from
``WEIGHTS_FILE`` (a path in the build context, mounted at ``$BUILD_CONTEXT``),
``WEIGHTS_URL``, or else facenet-pytorch's vggface2 download; checks
``WEIGHTS_SHA256`` when given and that the file is an InceptionResnetV1
state_dict.  Nothing is left behind on a failure.  A file rather than a RUN
heredoc: buildah/podman before 1.33 do not understand heredocs.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import urllib.request


def main() -> None:
    out_dir = os.environ.get("WEIGHTS_OUT", "/opt/facegrid/weights")
    context = os.environ.get("BUILD_CONTEXT", "/context")
    out = os.path.join(out_dir, f"{os.environ['MODEL_ID']}.pt")
    url, sha, local = (os.environ.get(k, "")
                       for k in ("WEIGHTS_URL", "WEIGHTS_SHA256", "WEIGHTS_FILE"))
    if local:
        shutil.copyfile(os.path.join(context, local), out)
    elif url:
        urllib.request.urlretrieve(url, out)
    else:
        from facenet_pytorch.models.inception_resnet_v1 import (
            InceptionResnetV1,
            get_torch_home,
        )
        InceptionResnetV1(pretrained="vggface2")  # downloads into $TORCH_HOME/checkpoints
        src = os.path.join(get_torch_home(), "checkpoints", "20180402-114759-vggface2.pt")
        shutil.copyfile(src, out)
    with open(out, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    if sha and digest != sha.lower():
        os.remove(out)
        sys.exit(f"weights sha256 {digest} != WEIGHTS_SHA256 {sha}")
    import torch

    state = torch.load(out, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "last_linear.weight" not in state:
        os.remove(out)
        sys.exit(f"{out} is not an InceptionResnetV1 state_dict")
    sys.stdout.write(f"weights {out} sha256 {digest}\n")


if __name__ == "__main__":
    main()
