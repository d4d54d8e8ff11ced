"""HTTP routers: orders for customers and operators, ops for probes and scrapers."""
