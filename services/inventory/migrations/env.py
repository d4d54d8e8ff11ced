from services.common.migrations import run_migrations
from services.inventory.tables import metadata

run_migrations(metadata, service="inventory")
