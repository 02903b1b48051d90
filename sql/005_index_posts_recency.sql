-- Newest posts first, fast at any table size. The monitoring pages (fnd_core/monitoring.py)
-- walk posts by recency — publication time, else ingestion time, as fnd.daily_summary counts
-- days — to find the day window of the volume chart, the latest posts flagged fake and the
-- sample the champion is compared on. Without this index each of those reads every post;
-- with it they read only the window asked for and probe fnd.predictions by primary key.
-- The expression must match the queries' `coalesce(created_at, ingested_at)` exactly.

create index posts_recency_idx on fnd.posts ((coalesce(created_at, ingested_at)));
comment on index fnd.posts_recency_idx is
    'coalesce(created_at, ingested_at): newest-first scans for the monitoring pages.';
