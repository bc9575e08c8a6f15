"""optuna-dashboard for a study's storage, bound to loopback unless told otherwise."""

from __future__ import annotations

import ipaddress

from rich.console import Console

from scaletune.search.config import load_study
from scaletune.search.storage import make_storage, mask_url


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(study_path: str, host: str = "127.0.0.1", port: int = 8080,
          console: Console | None = None) -> int:
    """Serve the dashboard until interrupted. Intermediate values show as learning curves."""
    from optuna_dashboard import run_server

    console = console or Console()
    cfg = load_study(study_path)
    if not is_loopback(host):
        console.print(
            f"[yellow]warning: the dashboard binds to {host}: anyone who can reach this address "
            "can read the study. Use 127.0.0.1 and an SSH tunnel unless you mean it.[/]"
        )
    storage = make_storage(cfg.storage_url)
    console.print(f"dashboard for {mask_url(cfg.storage_url)} at http://{host}:{port}/dashboard/")
    try:
        run_server(storage, host=host, port=port)
    except KeyboardInterrupt:
        pass
    return 0
