"""revoked nodes: revocation of every token of a node issued before an instant

Revision ID: 0005
Revises: 0004
"""

import facegrid_services.store.models
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('revoked_nodes',
    sa.Column('node_id', sa.String(length=63), nullable=False),
    sa.Column('not_before', facegrid_services.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', facegrid_services.store.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.PrimaryKeyConstraint('node_id')
    )


def downgrade() -> None:
    op.drop_table('revoked_nodes')
