"""Worker groups on Ray: the distributed backend of the controller (`distributed.backend: ray`)."""
