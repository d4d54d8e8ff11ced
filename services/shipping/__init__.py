"""Shipping: shipments of an order's goods to the customer's address."""
