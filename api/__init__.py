"""The thin HTTP API: starts order workflows and reads them back from Temporal.

It keeps no database of its own; Temporal is the system of record for orders.
"""
