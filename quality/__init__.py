"""Service quality (issue #17, decision 0026): the caller's satisfaction survey after a
queue call; QA scoring of recordings."""
