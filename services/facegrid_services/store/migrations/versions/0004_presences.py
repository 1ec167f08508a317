"""presences and strangers; sightings point at their presence

Existing data is kept: every (node, track) of the stored sightings becomes one
presence (recognised when any of its sightings was, as the person recognised
last; otherwise unknown), and the sightings are pointed at it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 10:00:00
"""

import facegrid_services.store.models
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

UTC = facegrid_services.store.models.UTCDateTime(timezone=True)
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

BACKFILL_PRESENCES = """
INSERT INTO presences (node_id, track_id, status, person_id, locked, first_seen, last_seen,
                       frames, events, score, best_score, threshold, model, weight, history)
SELECT s.node_id, s.track_id,
       CASE WHEN MAX(CASE WHEN s.recognised THEN 1 ELSE 0 END) = 1
            THEN 'recognised' ELSE 'unknown' END,
       (SELECT s2.person_id FROM sightings s2
         WHERE s2.node_id = s.node_id AND s2.track_id = s.track_id AND s2.recognised
         ORDER BY s2.corrected_utc DESC, s2.id DESC LIMIT 1),
       false, MIN(s.corrected_utc), MAX(s.corrected_utc), COUNT(*), COUNT(*),
       MAX(s.score), MAX(s.score), MAX(s.threshold), MAX(s.model), 0.0, '[]'
  FROM sightings s
 GROUP BY s.node_id, s.track_id
"""
LINK_SIGHTINGS = """
UPDATE sightings SET presence_id = (
    SELECT p.id FROM presences p
     WHERE p.node_id = sightings.node_id AND p.track_id = sightings.track_id)
"""


def upgrade() -> None:
    op.create_table('strangers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('vector', sa.LargeBinary(), nullable=False),
    sa.Column('presences', sa.Integer(), nullable=False),
    sa.Column('first_seen', UTC, nullable=False),
    sa.Column('last_seen', UTC, nullable=False),
    sa.Column('nodes', sa.JSON(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('strangers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_strangers_last_seen'), ['last_seen'], unique=False)

    op.create_table('presences',
    sa.Column('id', ID, nullable=False),
    sa.Column('node_id', sa.String(length=63), nullable=False),
    sa.Column('track_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=True),
    sa.Column('locked', sa.Boolean(), nullable=False),
    sa.Column('first_seen', UTC, nullable=False),
    sa.Column('last_seen', UTC, nullable=False),
    sa.Column('frames', sa.Integer(), nullable=False),
    sa.Column('events', sa.Integer(), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('best_score', sa.Float(), nullable=False),
    sa.Column('threshold', sa.Float(), nullable=False),
    sa.Column('model', sa.String(length=64), nullable=False),
    sa.Column('aggregate', sa.LargeBinary(), nullable=True),
    sa.Column('weight', sa.Float(), nullable=False),
    sa.Column('history', sa.JSON(), nullable=False),
    sa.Column('confirmed_at', UTC, nullable=True),
    sa.Column('stranger_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['people.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['stranger_id'], ['strangers.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('node_id', 'track_id')
    )
    with op.batch_alter_table('presences', schema=None) as batch_op:
        batch_op.create_index('ix_presences_last_seen', ['last_seen'], unique=False)
        batch_op.create_index('ix_presences_status_last_seen', ['status', 'last_seen'],
                              unique=False)
        batch_op.create_index('ix_presences_person_first_seen', ['person_id', 'first_seen'],
                              unique=False)
        batch_op.create_index(batch_op.f('ix_presences_stranger_id'), ['stranger_id'],
                              unique=False)

    with op.batch_alter_table('sightings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('presence_id', ID, nullable=True))
        batch_op.create_index(batch_op.f('ix_sightings_presence_id'), ['presence_id'],
                              unique=False)
        batch_op.create_foreign_key('fk_sightings_presence_id_presences', 'presences',
                                    ['presence_id'], ['id'], ondelete='SET NULL')

    op.execute(BACKFILL_PRESENCES)
    op.execute(LINK_SIGHTINGS)


def downgrade() -> None:
    with op.batch_alter_table('sightings', schema=None) as batch_op:
        batch_op.drop_constraint('fk_sightings_presence_id_presences', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_sightings_presence_id'))
        batch_op.drop_column('presence_id')
    with op.batch_alter_table('presences', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_presences_stranger_id'))
        batch_op.drop_index('ix_presences_person_first_seen')
        batch_op.drop_index('ix_presences_status_last_seen')
        batch_op.drop_index('ix_presences_last_seen')
    op.drop_table('presences')
    with op.batch_alter_table('strangers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_strangers_last_seen'))
    op.drop_table('strangers')
