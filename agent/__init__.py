"""feedback-agent: classification, replies, root causes, analytics, reports and the HTTP service."""
