"""``facegrid node``: wiring only (logic lives in named modules)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

log = logging.getLogger(__name__)

def node(
    node_id: Annotated[str | None, typer.Option("--node-id", help="This node's id "
                                                "[env FACEGRID_NODE_ID].")] = None,
    redis_url: Annotated[str | None, typer.Option("--redis-url", help="[env FACEGRID_REDIS_URL]")
                         ] = None,
    server_url: Annotated[str | None, typer.Option("--server-url",
                                                   help="[env FACEGRID_SERVER_URL]")] = None,
    camera: Annotated[str | None, typer.Option("--camera", help="Webcam index, device, URL, "
                                               "video file or image folder "
                                               "[env FACEGRID_CAMERA].")] = None,
    token_file: Annotated[Path | None, typer.Option("--token-file",
                                                    help="[env FACEGRID_TOKEN_FILE]")] = None,
    weights: Annotated[str | None, typer.Option("--weights", help="vggface2, casia-webface or "
                                                "a state_dict file [env FACEGRID_WEIGHTS].")
                       ] = None,
    model_id: Annotated[str | None, typer.Option("--model-id", help="Model id of a --weights "
                                                 "file [env FACEGRID_MODEL_ID].")] = None,
    timezone: Annotated[str | None, typer.Option("--timezone",
                                                 help="IANA zone [env FACEGRID_TIMEZONE]")
                        ] = None,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", help="/metrics, /healthz, /readyz [env FACEGRID_METRICS_PORT].")
                            ] = None,
    loop: Annotated[bool | None, typer.Option("--loop/--no-loop", help="Loop a video file "
                                              "or folder [env FACEGRID_LOOP].")] = None,
    show: Annotated[bool | None, typer.Option("--show/--no-show", help="Preview window with "
                                              "green/red boxes [env FACEGRID_SHOW].")] = None,
    min_face_size: Annotated[int | None, typer.Option("--min-face-size")] = None,
    idle_after: Annotated[float | None, typer.Option(
        "--idle-after", help="Seconds without motion or face before idling "
        "[env FACEGRID_IDLE_AFTER_S].")] = None,
    send_distance: Annotated[float | None, typer.Option(
        "--send-distance", help="Cosine distance that makes a track send again "
        "[env FACEGRID_SEND_DISTANCE].")] = None,
    resend_interval: Annotated[float | None, typer.Option(
        "--resend-interval", help="Seconds after which a track sends again "
        "[env FACEGRID_RESEND_INTERVAL_S].")] = None,
    reembed_every: Annotated[int | None, typer.Option("--reembed-every")] = None,
    detect_every: Annotated[int | None, typer.Option("--detect-every")] = None,
    backend: Annotated[str | None, typer.Option(
        "--backend", help="onnx (default, no torch) or torch [env FACEGRID_BACKEND].")] = None,
    onnx_dir: Annotated[Path | None, typer.Option(
        "--onnx-dir", help="Folder of exported ONNX files [env FACEGRID_ONNX_DIR].")] = None,
    int8: Annotated[bool | None, typer.Option(
        "--int8/--no-int8", help="int8 embedder (onnx) [env FACEGRID_INT8].")] = None,
    detect_max_side: Annotated[int | None, typer.Option(
        "--detect-max-side", help="Longest frame side given to the detector "
        "[env FACEGRID_DETECT_MAX_SIDE].")] = None,
    threads: Annotated[int | None, typer.Option("--threads", help="Inference threads (0: "
                                                "cores − 1) "
                                                "[env FACEGRID_THREADS].")] = None,
) -> None:
    """Run the edge node agent: camera → faces → embeddings → Redis stream (never pictures)."""
    import signal

    from pydantic import ValidationError

    from facegrid_node.settings import NodeSettings

    given = {"node_id": node_id, "redis_url": redis_url, "server_url": server_url,
             "camera": camera, "token_file": token_file, "weights": weights,
             "model_id": model_id, "timezone": timezone, "metrics_port": metrics_port,
             "loop": loop, "show": show, "min_face_size": min_face_size,
             "idle_after_s": idle_after, "send_distance": send_distance,
             "resend_interval_s": resend_interval, "reembed_every": reembed_every,
             "detect_every": detect_every, "threads": threads, "backend": backend,
             "onnx_dir": onnx_dir, "int8": int8, "detect_max_side": detect_max_side}
    try:
        settings = NodeSettings(**{k: v for k, v in given.items() if v is not None})
    except ValidationError as e:
        typer.echo(f"error: invalid settings:\n{e}", err=True)
        raise typer.Exit(2) from None

    from facegrid_vision.models import WeightsError

    from facegrid_node.agent import NodeAgent
    from facegrid_node.token_file import TokenFileError

    try:
        agent = NodeAgent(settings)
    except (WeightsError, TokenFileError, FileNotFoundError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except OSError as e:  # e.g. the metrics port is taken
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None

    def _term(signum, _frame) -> None:
        log.info("signal %d: stopping", signum)
        agent.stop()

    signal.signal(signal.SIGTERM, _term)
    signal.signal(signal.SIGINT, _term)
    raise typer.Exit(agent.run())


def register(app: typer.Typer) -> None:
    app.command("node")(node)


def reference() -> list:
    """Settings and metrics of the node for the generated docs (``facegrid.reference``)."""
    from facegrid.plugins import MetricsDoc, SettingsDoc
    from facegrid.reference import metric_objects
    from facegrid_node.metrics import NodeMetrics
    from facegrid_node.settings import NodeSettings

    return [SettingsDoc(10, "Edge node", "facegrid node", NodeSettings),
            MetricsDoc(10, "Edge node (:9100/metrics)",
                       metric_objects(vars(NodeMetrics("reference"))))]
