"""schedules, groups, closures and corrections (attendance rules)

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:05:00
"""

import facegrid_services.store.models
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

UTC_DT = facegrid_services.store.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        'schedules',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('timezone', sa.String(length=64), nullable=False),
        sa.Column('shifts', sa.JSON(), nullable=False),
        sa.Column('grace_late_min', sa.Integer(), nullable=False),
        sa.Column('grace_early_min', sa.Integer(), nullable=False),
        sa.Column('created_at', UTC_DT, nullable=False),
        sa.Column('updated_at', UTC_DT, nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'))
    op.create_table(
        'groups',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('description', sa.String(length=500), nullable=False),
        sa.Column('schedule_id', sa.Integer(), nullable=True),
        sa.Column('created_at', UTC_DT, nullable=False),
        sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('name'))
    op.create_table(
        'group_members',
        sa.Column('group_id', sa.Integer(), nullable=False),
        sa.Column('person_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['group_id'], ['groups.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['person_id'], ['people.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('group_id', 'person_id'))
    op.create_index('ix_group_members_person_id', 'group_members', ['person_id'])
    op.create_table(
        'closures',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('schedule_id', sa.Integer(), nullable=True),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(['schedule_id'], ['schedules.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('day', 'schedule_id'))
    op.create_index('ix_closures_day', 'closures', ['day'])
    op.create_table(
        'corrections',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('person_id', sa.Integer(), nullable=False),
        sa.Column('day', sa.Date(), nullable=False),
        sa.Column('kind', sa.String(length=16), nullable=False),
        sa.Column('at', UTC_DT, nullable=False),
        sa.Column('until', UTC_DT, nullable=True),
        sa.Column('reason', sa.String(length=500), nullable=False),
        sa.Column('made_at', UTC_DT, nullable=False),
        sa.Column('made_by', sa.String(length=100), nullable=False),
        sa.Column('made_by_token_id', sa.Integer(), nullable=True),
        sa.Column('before', sa.JSON(), nullable=False),
        sa.Column('after', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['person_id'], ['people.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'))
    op.create_index('ix_corrections_person_day', 'corrections', ['person_id', 'day'])


def downgrade() -> None:
    op.drop_index('ix_corrections_person_day', table_name='corrections')
    op.drop_table('corrections')
    op.drop_index('ix_closures_day', table_name='closures')
    op.drop_table('closures')
    op.drop_index('ix_group_members_person_id', table_name='group_members')
    op.drop_table('group_members')
    op.drop_table('groups')
    op.drop_table('schedules')
