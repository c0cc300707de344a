"""MLflow tracking: where the data goes (:mod:`.store`), the tag names (:mod:`.tags`), the tracking
thread (:mod:`.writer`) and the tracker that mirrors a search into MLflow (:mod:`.tracker`).

Importing this package imports neither MLflow nor Ray.
"""

from hpsearch.tracking.store import (
    check_existing_store,
    check_reachable,
    check_tracking_uri,
    default_tracking_uri,
)

__all__ = ["check_existing_store", "check_reachable", "check_tracking_uri", "default_tracking_uri"]
