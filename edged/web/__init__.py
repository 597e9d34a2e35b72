"""The one aiohttp server: pages for phones, the JSON API, /metrics and health checks."""
