"""SHIM, replaced by the audit trail's own revision when that lands: an empty revision
"0007_audit" so that "0008_grants" has its parent. It creates nothing.
"""

from __future__ import annotations

revision = "0007_audit"
down_revision = "0006_keyring"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Nothing (placeholder for the audit revision)."""


def downgrade() -> None:
    """Nothing (placeholder for the audit revision)."""
