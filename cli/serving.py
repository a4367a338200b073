"""``ranking rank`` and ``ranking serve``: ranked lists, in the shell and over HTTP."""

from __future__ import annotations

import ipaddress
import json
import sys
from datetime import datetime
from pathlib import Path

import typer
from rich.table import Table

from cli.common import HomeOption, console, fail, now, require_warehouse, settings_for
from ranking.settings import Settings

app = typer.Typer()


def rank_with_champion(settings: Settings, user: str, k: int, at: datetime):
    """Rank for ``user`` with the champion (the same call the HTTP service makes)."""
    from ranking.publishing.serving_model import serving_champion
    from ranking.serving.ranker import rank_request

    def feast_store():  # opened only if the publication cannot answer
        from ranking.features.store import get_store

        return get_store(settings)

    require_warehouse(settings)
    return rank_request(settings, feast_store, serving_champion(settings), user, at, k)


def print_ranked(ranked) -> None:
    title = f"Top {len(ranked.items)} for {ranked.user_id}"
    if ranked.fallback:
        console.print(f"[yellow]fallback order (no model score):[/] {ranked.fallback}")
    else:
        title += f" (ranker v{ranked.model_version}, alias champion)"
    console.print(f"[italic]{title}[/]", soft_wrap=True)  # a title above, not wrapped in it
    table = Table()
    # The model's score, or (no model ranked) what ordered the list, under its own name.
    shown = "fallback_score" if ranked.fallback else "score"
    for col in ("rank", "item_id", "category", shown, "sources", "rule"):
        table.add_column(col, justify="right" if col in ("rank", shown) else "left")
    for row in ranked.items.itertuples(index=False):
        table.add_row(str(row.rank), row.item_id, row.category, f"{getattr(row, shown):.4f}",
                      row.sources, row.rule)  # fmt: skip
    console.print(table)
    kept_out = {rule: n for rule, n in ranked.dropped.items() if n}
    if kept_out:
        listed = ", ".join(f"{rule} {n}" for rule, n in kept_out.items())
        console.print(f"kept out by the rules: {listed}")


@app.command()
def rank(
    user: str = typer.Option(..., "--user", help="User id."),
    k: int = typer.Option(10, "--k", help="How many items."),
    at: str = typer.Option(None, help="Request time (ISO); default now."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    home: Path = HomeOption,
) -> None:
    """Rank items for a user with online features and the champion model."""
    moment = datetime.fromisoformat(at) if at else now()
    ranked = rank_with_champion(settings_for(home), user, k, moment)
    if as_json:
        from ranking.serving.ranker import items_as_records

        payload = {
            "user_id": ranked.user_id,
            "model_version": ranked.model_version,
            "fallback": ranked.fallback,
            "items": items_as_records(ranked.items),
            "dropped": ranked.dropped,
        }
        sys.stdout.write(json.dumps(payload, default=float) + "\n")
        return
    print_ranked(ranked)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@app.command("serve")
def serve_http(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="Port."),
    home: Path = HomeOption,
) -> None:
    """HTTP ranking service (FastAPI): POST /rank, GET /health; logs served impressions."""
    import uvicorn

    from ranking.serving.http import create_app

    settings = settings_for(home)
    if settings.serving.api_token is None and not _loopback(host):
        fail(f"--host {host} is reachable from other machines: set "
             "RANKING_SERVING__API_TOKEN (clients then send 'Authorization: Bearer <token>'), "
             "or bind to 127.0.0.1")  # fmt: skip
    console.print(f"Serving on http://{host}:{port} (docs at /docs); served lists go to "
                  f"{settings.raw_dir / 'served'}", soft_wrap=True)  # fmt: skip
    uvicorn.run(create_app(settings, clock=now), host=host, port=port, log_level="warning",
                limit_concurrency=settings.serving.max_connections)  # fmt: skip
