"""A fourth domain that exists only for tests/unit/test_domains.py: its own
package (activities, app) plus one registry line, and nothing else."""
