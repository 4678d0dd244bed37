"""Every figure `python -m bench` produces, in order. Adding one: write bench/fig_<name>.py with a FIGURE,
then list it here."""

from __future__ import annotations

from bench import (
    fig_jwt,
    fig_latency,
    fig_logout,
    fig_memory,
    fig_peer,
    fig_redis,
    fig_refresh_http,
    fig_refresh_shares,
    fig_scaling,
    fig_verify_http,
)
from bench.figures_api import Figure

FIGURES: tuple[Figure, ...] = (
    fig_jwt.FIGURE,
    fig_verify_http.FIGURE,
    fig_latency.FIGURE,
    fig_redis.FIGURE,
    fig_refresh_http.FIGURE,
    fig_refresh_shares.FIGURE,
    fig_peer.FIGURE,
    fig_scaling.FIGURE,
    fig_memory.FIGURE,
    fig_logout.FIGURE,
)
