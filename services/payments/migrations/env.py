from services.common.migrations import run_migrations
from services.payments.tables import metadata

run_migrations(metadata, service="payments")
