"""Results as pure data: the decoded predictions of a frame (``predictions``), the per-video and
per-person result (``video``) and the per-frame table, defined once (``table``)."""
