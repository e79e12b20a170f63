"""The shipped email templates (one folder per notification type) and their Jinja filters.

The renderer lives in :mod:`worker.rendering`; ``docs/templates.md`` describes the layout.
"""

from __future__ import annotations

__all__: list[str] = []
