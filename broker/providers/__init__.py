"""Upstream identity providers. Only `registry` names concrete implementations."""
