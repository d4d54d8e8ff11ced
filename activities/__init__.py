"""Activities: one module per domain, each a class wrapping a typed HTTP client of
its service. The worker's composition root injects the clients; tests inject fakes."""
