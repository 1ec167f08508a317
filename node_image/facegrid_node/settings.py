"""Settings of the edge node agent: one pydantic-settings class, env prefix ``FACEGRID_``.

Every field can be given on the command line (``facegrid node --…``) or in the
environment (``FACEGRID_NODE_ID``, ``FACEGRID_REDIS_URL``, …); the CLI builds
one :class:`NodeSettings` and passes it down.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from facegrid.settings import RedisSettings
from facegrid.types import HttpUrl, IanaZone, ModelId, NodeId


class NodeSettings(RedisSettings):
    """Configuration of one camera node (shared fields from :mod:`facegrid.settings`)."""

    # --- identity and peers -------------------------------------------------
    node_id: NodeId = Field("node-1", description="DNS-1123 name of this node (the CameraNode "
                            "name).")
    server_url: HttpUrl = Field("http://127.0.0.1:8000", description="facegrid API server.")
    token_file: Path = Field(Path("token"), description="File holding the node JWT; re-read "
                             "when it changes (rotation without restart).")
    timezone: IanaZone = Field("UTC", description="IANA time zone of the camera site.")

    # --- camera -------------------------------------------------------------
    camera: str = Field("0", description="Webcam index, /dev/videoN, rtsp://… or http://… URL, "
                        "video file or folder of images.")
    loop: bool = Field(False, description="Loop a video file or image folder.")
    realtime: bool = Field(True, description="Pace files at their own frame rate.")
    source_fps: float = Field(25.0, gt=0, le=120, description="Rate for image folders.")
    camera_width: int | None = Field(None, ge=16, le=7680, description="Capture width: asked "
                                     "of the camera, other frames resized (with height).")
    camera_height: int | None = Field(None, ge=16, le=4320, description="Capture height.")
    camera_timeout_s: float = Field(5.0, gt=0, description="No frame for this long: camera down.")
    reconnect_max_s: float = Field(30.0, gt=0, description="Longest wait between reconnects.")

    # --- model --------------------------------------------------------------
    weights: str = Field("vggface2", description="'vggface2' (facenet-pytorch pretrained, "
                         "downloaded once), 'casia-webface' (converted test weights), a "
                         "state_dict file, or a folder of exported ONNX files "
                         "(manifest.json).")
    backend: Literal["onnx", "torch"] = Field(
        "onnx", description="'onnx' (ONNX Runtime + numpy, no torch: the node image) or "
        "'torch' (facenet-pytorch, needs the torch extra).")
    onnx_dir: Path | None = Field(None, description="Folder of exported ONNX files (default: "
                                  "the weights folder, or the cache folder of its model id, "
                                  "exported there first when torch is installed).")
    int8: bool = Field(False, description="Run the int8 (dynamically quantised) embedder "
                       "(onnx backend; model id gets '.int8', so the gallery must be "
                       "enrolled with it too).")
    model_id: ModelId | None = Field(None, description="Model id for a --weights file "
                                 "(default: the file name without suffix).")
    min_face_size: int = Field(40, ge=12, le=1000, description="MTCNN minimum face, pixels.")
    margin: int = Field(44, ge=0, le=100, description="Crop margin in 160×160 pixels (enroll "
                        "with the same).")
    flip: bool = Field(True, description="Average each face's embedding with its mirror "
                       "image's (enroll with the same).")
    detect_max_side: int = Field(640, ge=0, description="Downscale frames so their longer "
                                 "side is at most this before MTCNN (0: never); smaller is "
                                 "faster but misses small faces (raise min_face_size with it "
                                 "only for near cameras).")
    det_threshold: float = Field(0.92, ge=0, le=1, description="Minimum face probability.")
    threads: int = Field(0, ge=0, le=256, description="Inference threads (0: cores − 1, at "
                         "least 1).")
    embed_batch: int = Field(16, ge=1, le=256, description="Most faces per embedding run.")
    embed_in_background: bool = Field(True, description="Embed on a second thread while the "
                                      "next frames are detected (uses a second core; false: "
                                      "embed in the frame's own step).")

    # --- quality and idle ---------------------------------------------------
    dark_threshold: float = Field(25.0, ge=0, le=255, description="Mean brightness below "
                                  "which a frame is too dark.")
    dark_window: int = Field(5, ge=1, le=1000, description="Frames averaged for darkness.")
    motion_threshold: float = Field(0.004, ge=0, le=1, description="Share of changed pixels "
                                    "on the small grey frame that counts as motion.")
    idle_after_s: float = Field(30.0, ge=0, description="No motion and no face this long: idle.")
    idle_fps: float = Field(2.0, gt=0, le=60, description="Capture rate while idle.")
    max_fps: float = Field(30.0, gt=0, le=240, description="Capture rate cap while active.")

    # --- tracking and sending ------------------------------------------------
    iou_threshold: float = Field(0.3, gt=0, lt=1, description="IoU to continue a track.")
    detect_every: int = Field(1, ge=1, le=100, description="Run the detector every N frames "
                              "while faces are tracked (every frame when none is; 1: every "
                              "active frame, the default).")
    reembed_every: int = Field(10, ge=1, le=10000, description="Re-embed a track every K "
                               "detections.")
    reembed_iou: float = Field(0.6, gt=0, le=1, description="Re-embed when the box's IoU with "
                               "the last embedded box falls below this.")
    send_distance: float = Field(0.25, gt=0, le=2, description="Send again when a track's "
                                 "embedding moved more than this cosine distance.")
    resend_interval_s: float = Field(60.0, gt=0, description="Send a track again after this.")
    track_max_age_s: float = Field(1.5, gt=0, description="Forget a track unseen this long.")

    # --- transport -----------------------------------------------------------
    stream_maxlen: int = Field(0, ge=0, description=(
        "Approximate MAXLEN on XADD; 0 (default): never trim (the worker trims what it "
        "acknowledged, so a node never deletes unread events)."))
    buffer_size: int = Field(1000, ge=1, le=1_000_000, description="Events kept while Redis "
                             "is away.")
    max_event_age_s: float = Field(300.0, gt=0, description="Buffered events older than this "
                                   "are dropped.")
    heartbeat_interval_s: float = Field(5.0, gt=0, le=3600,
        description="Seconds between heartbeats (the server's reply may change it).")
    http_timeout_s: float = Field(5.0, gt=0, le=120,
        description="Timeout of each call to the API server.")

    # --- ops -----------------------------------------------------------------
    metrics_port: int = Field(9100, ge=0, le=65535, description="/metrics, /healthz, /readyz "
                              "(0: off).")
    metrics_host: str = Field("0.0.0.0",
        description="Address of the /metrics, /healthz and /readyz listener.")
    show: bool = Field(False, description="Preview window with green/red boxes (needs a display).")

    @model_validator(mode="after")
    def _camera_size(self) -> NodeSettings:
        if (self.camera_width is None) != (self.camera_height is None):
            raise ValueError("set camera_width and camera_height together")
        if self.int8 and self.backend != "onnx":
            raise ValueError("int8 needs backend onnx")
        return self

    @property
    def camera_size(self) -> tuple[int, int] | None:
        """(width, height) asked of the camera, or None to take what it gives."""
        if self.camera_width is None or self.camera_height is None:
            return None
        return (self.camera_width, self.camera_height)
