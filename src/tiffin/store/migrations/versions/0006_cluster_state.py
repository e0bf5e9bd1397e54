"""cluster state: the published routing snapshot and the running gateways

Scaled out, the controller, the API and any number of gateways are separate processes that share only
the store: the leading controller publishes its routing snapshot there, and each gateway keeps a
heartbeat row with what it counted.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 10:05:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "published_routes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "gateways",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("address", sa.String(length=256), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("traffic", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id"),
    )
    op.create_index("ix_gateways_heartbeat_at", "gateways", ["heartbeat_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_gateways_heartbeat_at", table_name="gateways")
    op.drop_table("gateways")
    op.drop_table("published_routes")
