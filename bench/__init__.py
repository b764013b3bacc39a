"""`make bench`: throughput and latency of the service against two anchors (`bench/run.py`)."""
