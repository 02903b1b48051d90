"""The read side: monitoring queries, drift reports, output checks and notifications."""
