-- Every landing entry ends accounted for, even one that is never read: a link, a FIFO, a
-- device or a file over FND_MAX_LANDING_BYTES is recorded as a failed batch with its reason.
-- Such an entry has no content hash (reading it is what is refused), hence a nullable hash;
-- the unique constraint still makes the same bytes a no-op (NULLs never collide).
alter table fnd.ingest_batches alter column content_sha256 drop not null;
comment on column fnd.ingest_batches.content_sha256 is
    'sha256 of the file bytes: the idempotency key. NULL for an entry set aside unread (a link, FIFO, device or file over the size cap).';
comment on column fnd.ingest_batches.source_uri is
    'Where the file was found (local path or gs:// URI); bytes of a name that are not UTF-8 as \xNN escapes, backslashes doubled.';

-- A quarantined row keeps a bounded excerpt (FND_QUARANTINE_EXCERPT_BYTES) instead of the whole
-- row: a 10 MB row no longer costs 10 MB here, nor in every page that lists the quarantine.
-- The whole row stays in the archived (or failed/) file; its length, hash and byte offset
-- find it and prove it is the same. Rows quarantined before this migration keep their whole
-- raw text and NULL in the new columns.
alter table fnd.quarantine
    add column raw_n_bytes bigint,
    add column raw_sha256 text,
    add column raw_byte_offset bigint,
    add constraint quarantine_raw_sha256_is_hex check (raw_sha256 ~ '^[0-9a-f]{64}$'),
    add constraint quarantine_raw_sizes_not_negative
        check (raw_n_bytes >= 0 and raw_byte_offset >= 0);
comment on column fnd.quarantine.raw is
    'The start of the row as received (at most FND_QUARANTINE_EXCERPT_BYTES bytes; invalid bytes and NUL shown as escapes).';
comment on column fnd.quarantine.raw_n_bytes is
    'Length of the whole row in bytes, as in the file (Parquet: of the row as JSON). NULL: quarantined before excerpts.';
comment on column fnd.quarantine.raw_sha256 is
    'sha256 of the whole row''s bytes (line ending excluded): checks a row recovered from the archived file.';
comment on column fnd.quarantine.raw_byte_offset is
    'Byte offset of the row in its file (JSONL, CSV, TSV); NULL for Parquet (found by row_number).';
