"""Storage, image decoding and the database: what every layer above reads and writes through."""
