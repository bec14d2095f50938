"""What the master and its workers share across ``fork()``.

The scoreboard file (heartbeat, counters, the request each slot is serving), the signals
and how they are queued, the exit statuses a worker reports back, and the process titles.
Both processes import this room; it imports nothing else of greenhorn.
"""
