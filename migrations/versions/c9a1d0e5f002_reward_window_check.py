"""a reward's validity window ends after it starts (CHECK)

Revision ID: c9a1d0e5f002
Revises: c9a1d0e5f001
Create Date: 2026-12-02 10:00:00.000000

The rule "a window ends after it starts" now lives in the models (models.loyalty.programme)
and in the database. Promotions have held it as a CHECK since they were created
(ck_promotion_window: ends_at > starts_at, both required), so no promotion row can break it
and only rewards get a new CHECK here. A reward's window may be open at either end.

Existing rows that break the rule: a reward whose end came at or before its start was never on
offer (every availability check refused it). Such a reward is deactivated and its start cleared,
so that it stays off the catalogue exactly as before; an admin who reactivates it sets a new
window. Nothing else changes.

SQLite adds a CHECK only by building the table anew. Alembic's batch mode does that by copying
into a new table, dropping the old one and renaming the copy; the DROP fails as soon as a
redemption points at a reward (foreign keys are enforced, and SQLite cannot stop enforcing them
inside the migration's transaction). So the table is rebuilt here by hand, with foreign keys
checked at commit: the rows go back under the same ids into a table named `reward` again,
which settles every redemption's reference before the commit checks them.
"""
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = 'c9a1d0e5f002'
down_revision = 'c9a1d0e5f001'
branch_labels = None
depends_on = None

WINDOW = 'starts_at IS NULL OR ends_at IS NULL OR ends_at > starts_at'
COLUMNS = (
    'id, name_en, name_zh, description, points_cost, stock, starts_at, ends_at, min_tier, active'
)

reward = sa.table(
    'reward',
    sa.column('starts_at', sa.DateTime(timezone=True)),
    sa.column('ends_at', sa.DateTime(timezone=True)),
    sa.column('active', sa.Boolean()),
)


def _rebuild_reward_on_sqlite(*extra_checks):
    """Build `reward` anew with its constraints (and `extra_checks`), keeping every row and id."""
    op.execute('PRAGMA defer_foreign_keys = ON')  # checked at commit; reset by SQLite then
    op.execute(f'CREATE TABLE _reward_copy AS SELECT {COLUMNS} FROM reward')
    op.drop_table('reward')
    # Copied, not imported from the models, so that this migration keeps its meaning.
    op.create_table('reward',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name_en', sa.String(length=100), nullable=False),
    sa.Column('name_zh', sa.String(length=100), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('points_cost', sa.Integer(), nullable=False),
    sa.Column('stock', sa.Integer(), nullable=True),
    sa.Column('starts_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('min_tier', sa.String(length=32), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.CheckConstraint('points_cost > 0', name=op.f('ck_reward_points_cost')),
    sa.CheckConstraint('stock IS NULL OR stock >= 0', name=op.f('ck_reward_stock_not_negative')),
    *extra_checks,
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reward'))
    )
    op.execute(f'INSERT INTO reward ({COLUMNS}) SELECT {COLUMNS} FROM _reward_copy')
    op.drop_table('_reward_copy')


def upgrade():
    op.execute(
        reward.update()
        .where(
            reward.c.starts_at.is_not(None),
            reward.c.ends_at.is_not(None),
            reward.c.ends_at <= reward.c.starts_at,
        )
        .values(starts_at=None, active=sa.false())
    )
    if op.get_bind().dialect.name == 'sqlite':
        _rebuild_reward_on_sqlite(sa.CheckConstraint(WINDOW, name=op.f('ck_reward_window')))
    else:
        op.create_check_constraint(op.f('ck_reward_window'), 'reward', WINDOW)


def downgrade():
    if op.get_bind().dialect.name == 'sqlite':
        _rebuild_reward_on_sqlite()
    else:
        op.drop_constraint(op.f('ck_reward_window'), 'reward', type_='check')
