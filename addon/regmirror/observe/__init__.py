"""What operators see: the log line, flow comments, content views, metrics."""
