"""presences and strangers get received_at (server clock); retention counts from it

Retention deleted presences and strangers by ``last_seen`` and sightings by
``corrected_utc``: times a node's clock supplies (a node in 2099 kept its rows
for ever, one in 1999 lost them at once).  ``received_at`` is the worker's
clock when it last stored an event of the row.  Existing rows: a presence gets
the latest ``received_at`` of its sightings, a stranger the latest of its
presences; a row with none gets the upgrade's time (it lives one full retention
period from now, whatever its node's clock said).

Revision ID: 0007
Revises: 0006
"""

from datetime import UTC, datetime

import facegrid_services.store.models
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

UTC_TYPE = facegrid_services.store.models.UTCDateTime(timezone=True)

BACKFILL_PRESENCES = """
UPDATE presences SET received_at = COALESCE(
    (SELECT MAX(s.received_at) FROM sightings s WHERE s.presence_id = presences.id), :now)
"""
BACKFILL_STRANGERS = """
UPDATE strangers SET received_at = COALESCE(
    (SELECT MAX(p.received_at) FROM presences p WHERE p.stranger_id = strangers.id), :now)
"""


def upgrade() -> None:
    # Plain ADD COLUMN / CREATE INDEX, no batch table copy: on SQLite a copy of
    # presences would drop the old table, and its ON DELETE SET NULL would unlink
    # every sighting.  Nullable for the same reason; every writer sets it (the
    # models' default) and the backfill below leaves no NULL.
    now = sa.bindparam("now", datetime.now(UTC), type_=UTC_TYPE)
    for table in ("presences", "strangers"):
        op.add_column(table, sa.Column('received_at', UTC_TYPE, nullable=True))
    bind = op.get_bind()
    bind.execute(sa.text(BACKFILL_PRESENCES).bindparams(now))
    bind.execute(sa.text(BACKFILL_STRANGERS).bindparams(now))
    op.create_index('ix_presences_received_at', 'presences', ['received_at'], unique=False)
    op.create_index('ix_strangers_received_at', 'strangers', ['received_at'], unique=False)
    op.create_index('ix_sightings_received_at', 'sightings', ['received_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_sightings_received_at', table_name='sightings')
    op.drop_index('ix_strangers_received_at', table_name='strangers')
    op.drop_index('ix_presences_received_at', table_name='presences')
    op.drop_column('strangers', 'received_at')
    op.drop_column('presences', 'received_at')
