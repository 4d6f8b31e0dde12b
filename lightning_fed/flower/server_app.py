"""The Flower ServerApp: the project's own round loop, over the clients that Flower's nodes serve."""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from lightning_fed.checkpoint import resolve_ckpt_path
from lightning_fed.flower.experiment import load_experiment
from lightning_fed.flower.pool import FlowerPool

#: Seconds to wait for the nodes to connect and for each request's replies, unless the run config says otherwise.
DEFAULT_TIMEOUT = 3600.0


def make_server_app(experiment: Path) -> ServerApp:
    """The ServerApp of ``experiment``, running the in-process round loop over a :class:`FlowerPool`.

    Sampling, strategies, early stopping, checkpoints and ``results.json`` are those of
    :meth:`lightning_fed.federation.Federation.run`.

    Run config (``flwr run ... --run-config``): ``round-timeout`` (seconds), ``resume`` (a server checkpoint, or
    ``last``; the nodes must still hold their clients' states).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        loaded = load_experiment(experiment)
        federation, names = loaded.federation, loaded.client_names
        federation.check_model(loaded.model)
        resume = str(context.run_config.get("resume", "") or "") or None
        resume_from = resolve_ckpt_path(resume, federation.run_dir)
        if resume_from is None:
            federation._check_run_dir_is_free()
        server = federation.new_server(names)
        pool = FlowerPool(
            grid,
            names,
            loaded.model,
            timeout=float(context.run_config.get("round-timeout", DEFAULT_TIMEOUT)),
            send_initial=server.strategy.needs_uploads(),
            loggers=lambda: federation.loggers,
            step=lambda: federation.state.step,
            add_steps=federation._add_steps,
        )
        federation.run(pool, server, resume_from)

    return app
