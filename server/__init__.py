"""Tornado realtime server: WebSocket relay, HTTP API and the dashboard."""
