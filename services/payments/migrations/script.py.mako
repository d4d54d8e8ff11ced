"""${message}

Say why, in a line or two: the revision's code says what.
"""

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

# Alembic reads these four names; branch_labels and depends_on default to none.
revision = ${repr(up_revision)}
down_revision = ${repr(down_revision)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
