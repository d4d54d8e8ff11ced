"""`ordersaga bench`: what an order costs, next to what Temporal itself costs.

The baseline (a bare workflow of no-op activities, see `baseline`) and the saga
through the HTTP API run interleaved on the same Temporal server; the ratio
between them is the overhead ordersaga adds on top of Temporal's own ceiling.
"""
