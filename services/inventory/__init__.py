"""Inventory: products and their stock, and reservations of stock for orders."""
