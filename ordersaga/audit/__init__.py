"""`ordersaga audit`: reconcile every order's Temporal status with the three ledgers.

A tool, above everything else: it may import the API, contracts and settings;
nothing imports it. rules.py holds the checks on plain data; collect.py reads
Temporal and the services; report.py writes the table, JSON and metrics.
"""
