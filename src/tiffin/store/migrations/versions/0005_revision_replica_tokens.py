"""replica tokens per revision

Each revision now holds its own sealed replica token, so replicas of an old revision that keep serving
during a rollout keep a valid one. The deployment's single token moves onto its current revision (and
is renamed `replica:<deployment>:<revision uid>`); the deployment's column goes.

Columns are added and dropped in place (plain ALTER TABLE, SQLite 3.35 or newer), never by batch
mode's copy-and-drop of `deployments`: with foreign keys on, dropping that table would cascade to its
revisions, replicas and events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 10:12:03.118204
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMN = "replica_token_ciphertext"
deployments = sa.table(
    "deployments", sa.column("id"), sa.column("name"), sa.column("current_revision_id"), sa.column(COLUMN)
)
revisions = sa.table(
    "deployment_revisions", sa.column("id"), sa.column("deployment_id"), sa.column("uid"), sa.column(COLUMN)
)
tokens = sa.table("api_tokens", sa.column("name"))


def upgrade() -> None:
    op.add_column("deployment_revisions", sa.Column(COLUMN, sa.Text(), nullable=False, server_default=""))
    for name, revision_id, uid, current in _revisions():
        if current:
            sealed = sa.select(deployments.c[COLUMN]).where(deployments.c.name == name).scalar_subquery()
            _execute(revisions.update().where(revisions.c.id == revision_id).values({COLUMN: sealed}))
            _rename_token(f"replica:{name}", f"replica:{name}:{uid}")
    op.drop_column("deployments", COLUMN)


def downgrade() -> None:
    op.add_column("deployments", sa.Column(COLUMN, sa.Text(), nullable=False, server_default=""))
    for name, revision_id, uid, current in _revisions():
        if current:
            sealed = sa.select(revisions.c[COLUMN]).where(revisions.c.id == revision_id).scalar_subquery()
            _execute(deployments.update().where(deployments.c.name == name).values({COLUMN: sealed}))
            _rename_token(f"replica:{name}:{uid}", f"replica:{name}")
        else:
            _execute(tokens.delete().where(tokens.c.name == f"replica:{name}:{uid}"))
    op.drop_column("deployment_revisions", COLUMN)


def _revisions() -> list[tuple[str, int, str, bool]]:
    """(deployment name, revision id, revision uid, whether it is the deployment's current one)."""
    current = revisions.c.id == deployments.c.current_revision_id
    query = sa.select(deployments.c.name, revisions.c.id, revisions.c.uid, current).join(
        revisions, revisions.c.deployment_id == deployments.c.id
    )
    return [(str(r[0]), int(r[1]), str(r[2]), bool(r[3])) for r in op.get_bind().execute(query)]


def _rename_token(old: str, new: str) -> None:
    _execute(tokens.update().where(tokens.c.name == old).values(name=new))


def _execute(statement: sa.Executable) -> None:
    op.get_bind().execute(statement)
