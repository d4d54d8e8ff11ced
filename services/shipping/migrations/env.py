from services.common.migrations import run_migrations
from services.shipping.tables import metadata

run_migrations(metadata, service="shipping")
