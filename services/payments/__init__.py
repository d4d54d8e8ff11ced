"""Payments: charges to customers' cards, and their refunds."""
