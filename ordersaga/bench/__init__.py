"""`ordersaga bench`: what an order costs, next to what Temporal itself costs.

The baselines (bare workflows of no-op activities, see `baseline`, and one
making the saga's own service calls, see `same_work`) and the saga through the
HTTP API run interleaved on the same Temporal server; the ratios between them
are the overhead ordersaga adds on top of Temporal's own ceiling. The report
prints every target with its verdict (`report.targets`).
"""
