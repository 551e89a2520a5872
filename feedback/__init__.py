"""After a completion is accepted: the checks, the event store, following, datasets."""
