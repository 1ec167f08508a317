"""people get their own schedule (schedule_id), taking precedence over their groups'

A person's schedule was that of their lowest-numbered group with one; a person
may now carry a schedule of their own (a part-timer in a full-time team).
Deleting the schedule clears it (the groups' apply again).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        # SQLite adds a column with its REFERENCES inline; alembic would want a batch
        # table copy, which drops `people` and, with foreign keys on, cascades the
        # drop to everything that points to it (embeddings, memberships).  A downgrade
        # leaves the column (see there): then it is only indexed again.
        if 'schedule_id' not in {c['name'] for c in sa.inspect(bind).get_columns('people')}:
                op.execute("ALTER TABLE people ADD COLUMN schedule_id INTEGER "
                       "REFERENCES schedules (id) ON DELETE SET NULL")
    else:
        op.add_column('people', sa.Column('schedule_id', sa.Integer(), nullable=True))
        op.create_foreign_key('fk_people_schedule_id', 'people', 'schedules',
                              ['schedule_id'], ['id'], ondelete='SET NULL')
    op.create_index('ix_people_schedule_id', 'people', ['schedule_id'])


def downgrade() -> None:
    op.drop_index('ix_people_schedule_id', table_name='people')
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot drop a column a foreign key uses without re-creating `people`
        # (see upgrade): the column stays, NULLed; the older code never reads it.
        op.execute("UPDATE people SET schedule_id = NULL")
        return
    op.drop_constraint('fk_people_schedule_id', 'people', type_='foreignkey')
    op.drop_column('people', 'schedule_id')
