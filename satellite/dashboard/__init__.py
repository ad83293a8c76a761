"""The node's live web dashboard (``run_node.py --http HOST:PORT``).

``app.build_app`` makes the aiohttp application from any antenna-like object (the real
``satellite.Antenna`` in a node, a fake in tests); ``metrics.render`` writes the
Prometheus text; ``history.History`` keeps the last hour of temperatures. The page's
templates and its own small JS and CSS ship with the package (no CDN: a Pi in an office
may have no internet)."""
