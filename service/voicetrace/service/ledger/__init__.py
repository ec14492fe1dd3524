"""The usage ledger: every settled generation once, per-user daily totals, read by budgets and
`/api/observability/costs` (DESIGN.md §5)."""

from voicetrace.service.ledger.entry import LedgerEntry, Usage
from voicetrace.service.ledger.store import LedgerStore
from voicetrace.service.ledger.writer import LedgerWriter

__all__ = ["LedgerEntry", "LedgerStore", "LedgerWriter", "Usage"]
