"""scheduled jobs and their runs

Revision ID: c9a1d0e5f001
Revises: da51fb0932b1
Create Date: 2026-12-02 09:00:00.000000

"""
import sqlalchemy as sa
from alembic import op

# Copied, not imported, so that this migration keeps its meaning when the models change.
RUN_STATUSES = "'ok', 'failed', 'skipped'"


# revision identifiers, used by Alembic.
revision = 'c9a1d0e5f001'
down_revision = 'da51fb0932b1'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('scheduled_job',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('claimed_by', sa.String(length=128), nullable=True),
    sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_finished_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_status', sa.String(length=16), nullable=True),
    sa.Column('last_outcome', sa.Text(), nullable=False, server_default=''),
    sa.CheckConstraint(f"last_status IN ({RUN_STATUSES})", name=op.f('ck_scheduled_job_last_status')),
    sa.CheckConstraint('(claimed_by IS NULL) = (claimed_until IS NULL)', name=op.f('ck_scheduled_job_claim_complete')),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_scheduled_job'))
    )
    op.create_table('job_run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('job_name', sa.String(length=64), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('finished_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('outcome', sa.Text(), nullable=False, server_default=''),
    sa.Column('host', sa.String(length=128), nullable=False, server_default=''),
    sa.CheckConstraint(f"status IN ({RUN_STATUSES})", name=op.f('ck_job_run_status')),
    sa.CheckConstraint('finished_at >= started_at', name=op.f('ck_job_run_finished_after_start')),
    sa.ForeignKeyConstraint(['job_name'], ['scheduled_job.name'], name=op.f('fk_job_run_job_name_scheduled_job')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_job_run'))
    )
    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.create_index('ix_job_run_job_name_started_at', ['job_name', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_run_started_at'), ['started_at'], unique=False)


def downgrade():
    with op.batch_alter_table('job_run', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_run_started_at'))
        batch_op.drop_index('ix_job_run_job_name_started_at')

    op.drop_table('job_run')
    op.drop_table('scheduled_job')
