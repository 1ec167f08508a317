"""``facegrid operator``: runs the CameraNode operator (wiring only)."""

from __future__ import annotations

from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    @app.command("operator")
    def operator_cmd(
        namespace: Annotated[list[str] | None, typer.Option(
            "--namespace", "-n", help="Watch only this namespace (repeat; default: all, or "
            "FACEGRID_WATCH_NAMESPACES).")] = None,
        kubeconfig: Annotated[str | None, typer.Option(
            help="kubeconfig file (default: in-cluster, then ~/.kube/config).")] = None,
    ) -> None:
        """Run the CameraNode operator (kopf): tokens, node Deployments, status."""
        from prometheus_client import start_http_server

        from facegrid_operator.operator import run
        from facegrid_operator.settings import OperatorSettings

        overrides: dict = {}
        if namespace:
            overrides["watch_namespaces"] = namespace
        if kubeconfig:
            overrides["kubeconfig"] = kubeconfig
        try:
            settings = OperatorSettings(**overrides)
        except ValueError as e:
            typer.echo(f"facegrid operator: bad settings: {e}", err=True)
            raise typer.Exit(2) from None
        if settings.metrics_port:
            start_http_server(settings.metrics_port)
        run(settings)


def reference() -> list:
    """Settings and metrics of the operator (``facegrid.reference``)."""
    from facegrid.plugins import MetricsDoc, SettingsDoc
    from facegrid.reference import metric_objects
    from facegrid_operator import metrics
    from facegrid_operator.settings import OperatorSettings

    return [SettingsDoc(40, "Operator", "facegrid operator", OperatorSettings),
            MetricsDoc(40, "Operator (:9102/metrics)", metric_objects(vars(metrics)))]
