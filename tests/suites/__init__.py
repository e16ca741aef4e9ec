"""aioice's and aiortc's own test suites, run with syncice in aioice's place."""
